package compat_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind (SPEC G14).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
