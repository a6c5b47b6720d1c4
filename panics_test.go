package zkafka

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCatchKeepsTheStack: a recovered panic names what panicked, its value, and keeps the
// stack of the panic for the log.
func TestCatchKeepsTheStack(t *testing.T) {
	err := catch("processor", func() error { panic("boom") })
	require.EqualError(t, err, "zkafka: processor panicked: boom")
	require.True(t, isPanic(err))
	var pe *panicError
	require.ErrorAs(t, err, &pe)
	require.Contains(t, string(pe.stack), "TestCatchKeepsTheStack", "the stack is the panicking goroutine's")

	plain := errors.New("plain")
	require.Same(t, plain, catch("processor", func() error { return plain }))
	require.False(t, isPanic(plain))
	require.NoError(t, catch("processor", func() error { return nil }))

	ctx, err := catchCtx(func() (context.Context, error) { panic(42) })
	require.Nil(t, ctx)
	require.EqualError(t, err, "zkafka: lifecycle hook panicked: 42")
}

// TestLogFailure: an error is one warning; a panic is one error line with its stack; repeats
// of either are counted into one summary line without a stack.
func TestLogFailure(t *testing.T) {
	l := newCaptureLogger()
	f := newFailureLog(l)
	for range 50 {
		logFailure(context.Background(), f, "zkafka: hook failed", errors.New("bad"), "topic", "t")
		logFailure(context.Background(), f, "zkafka: hook failed", catch("lifecycle hook", func() error { panic("worse") }), "topic", "t")
	}
	lines := l.all()
	require.Len(t, lines, 2)
	require.True(t, strings.HasPrefix(lines[0], "warn zkafka: hook failed "), lines[0])
	require.Contains(t, lines[0], "bad")
	require.NotContains(t, lines[0], "stack")
	require.True(t, strings.HasPrefix(lines[1], "error zkafka: hook failed "), lines[1])
	require.Contains(t, lines[1], "worse")
	require.Contains(t, lines[1], "stack")
	require.Contains(t, lines[1], "TestLogFailure")
	require.Contains(t, lines[1], "runtime/debug.Stack")

	f.close()
	lines = l.all() // what came since
	require.Len(t, lines, 2)
	for _, line := range lines {
		require.Contains(t, line, "repeated | \"repeated\" | repeated | repeated 49 ")
		require.NotContains(t, line, "runtime/debug.Stack") // the stack's text
	}
}

// TestWrapErrKeepsThePrefixOnce: context added for the user does not repeat "zkafka: ", and
// the wrapped error is still found.
func TestWrapErrKeepsThePrefixOnce(t *testing.T) {
	inner := errConfig("ProducerTopicConfig.Topic is empty")
	err := wrapErr(inner, "creating the dead letter writer")
	require.EqualError(t, err, "zkafka: creating the dead letter writer: ProducerTopicConfig.Topic is empty")
	require.True(t, IsConfigError(err))
	require.ErrorIs(t, err, inner)
	require.EqualError(t, wrapErr(errors.New("boom"), "doing %s", "x"), "zkafka: doing x: boom")
}
