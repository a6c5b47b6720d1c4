package zkafka

// Panics in user code — the processor, lifecycle hooks, OnDone callbacks — are recovered here
// and nowhere else, so that each becomes an error that names what panicked and keeps the
// stack of the panic. A panic in a processor or in a hook that runs for one message fails
// that message (processor.go, readloop.go, instrument.go); a panic in a hook that belongs to no message is
// logged (runState.notify in work.go, and the writer's hooks in writer.go).

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
)

// panicError is a recovered panic of user code.
type panicError struct {
	what  string // "processor", "lifecycle hook", "OnDone callback"
	value any
	stack []byte
}

func (e *panicError) Error() string {
	return fmt.Sprintf("zkafka: %s panicked: %v", e.what, e.value)
}

// catch runs f, turning a panic into a *panicError about what.
func catch(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{what: what, value: r, stack: debug.Stack()}
		}
	}()
	return f()
}

// catchCtx runs a context-returning hook, turning a panic into a *panicError.
func catchCtx(f func() (context.Context, error)) (ctx context.Context, err error) {
	defer func() {
		if r := recover(); r != nil {
			ctx, err = nil, &panicError{what: "lifecycle hook", value: r, stack: debug.Stack()}
		}
	}()
	return f()
}

// isPanic reports whether err is (or wraps) a recovered panic.
func isPanic(err error) bool {
	_, ok := errors.AsType[*panicError](err)
	return ok
}

// logFailure logs a failed hook or callback through f: as a warning, or as an error when it
// panicked. The first of a kind (msg, and whether it panicked) is written at once, with the
// panic's stack; its repeats are summarised with their count (failurelog.go), so a hook that
// fails for every message is not a flood of lines.
func logFailure(ctx context.Context, f *failureLog, msg string, err error, keysAndValues ...any) {
	kv := append(keysAndValues, "error", err)
	if pe, ok := errors.AsType[*panicError](err); ok {
		f.logFirst(ctx, levelError, msg+"\x00panic", msg, kv, []any{"stack", string(pe.stack)})
		return
	}
	f.logFirst(ctx, levelWarn, msg+"\x00error", msg, kv, nil)
}
