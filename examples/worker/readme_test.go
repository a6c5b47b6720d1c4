package main

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeSnippet keeps the README's "Your first worker" snippet true to this example:
// every line of the snippet must appear in main.go, in the same order.
func TestReadmeSnippet(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- snippet: examples/worker/main.go")
	if !ok {
		t.Fatal("README has no snippet of examples/worker/main.go")
	}
	snippet, _, ok := strings.Cut(rest, "<!-- end snippet -->")
	if !ok {
		t.Fatal("README's snippet has no end marker")
	}
	var lines []string
	for _, l := range strings.Split(string(src), "\n") {
		lines = append(lines, strings.TrimSpace(l))
	}
	at := 0
	for _, want := range strings.Split(snippet, "\n") {
		want = strings.TrimSpace(want)
		if want == "" || strings.HasPrefix(want, "```") || strings.HasPrefix(want, "<!--") || strings.HasSuffix(want, "-->") {
			continue
		}
		for at < len(lines) && lines[at] != want {
			at++
		}
		if at == len(lines) {
			t.Fatalf("README snippet line %q is not in main.go (in this order)", want)
		}
		at++
	}
}
