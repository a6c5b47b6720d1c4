//go:build !race

package zkafka

// raceEnabled reports a test binary built with -race (race_on_test.go).
const raceEnabled = false
