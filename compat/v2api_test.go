package compat_test

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

//go:generate go run ../scripts/v2api -in testdata/zkafka-v2-api.txt -out v2api_gen_test.go

// TestV2APIListCovered fails when a line of zkafka v2's API list has no check in
// v2api_gen_test.go (the list changed and `make gen` was not run).
func TestV2APIListCovered(t *testing.T) {
	gen, err := os.ReadFile("v2api_gen_test.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]bool{}
	for _, l := range strings.Split(string(gen), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(l), "// v2: "); ok {
			checked[s] = true
		}
	}
	f, err := os.Open("testdata/zkafka-v2-api.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	lines := 0
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		lines++
		if !checked[l] {
			t.Errorf("not checked by v2api_gen_test.go (run make gen): %s", l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if lines < 300 {
		t.Fatalf("only %d API lines read; the list looks truncated", lines)
	}
}
