//go:build race

package zkafka

// raceEnabled reports a test binary built with -race, whose slowdown fills both cores of a
// small machine: a test of how soon a woken goroutine runs cannot tell there.
const raceEnabled = true
