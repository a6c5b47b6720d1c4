package zkafka

// The context a processor gets for one message. It has the semantics of
// context.WithTimeout(parent, ProcessTimeoutMillis) and is cancelled when the processor
// returns, like a WithTimeout context whose cancel is deferred, but it costs nothing until the
// processor asks for its Done channel: it lives inside the Message (no allocation) and needs no
// timer. Most processors never call Done (they compute, or call libraries that take no
// context); those that do get a real context.WithDeadline made on first use, so select,
// context.AfterFunc, child contexts and context.Cause behave exactly as with the standard
// library.
//
// Err works without Done: it reports the parent's error, DeadlineExceeded once the deadline
// has passed, or Canceled once the processor has returned.
//
// It relies only on the documented behaviour of the context package: a custom Context's
// children watch its Done channel, and once it is done, Value answers from the real context,
// so that context.Cause finds the real context's cause. Recognising the context package's
// private cancel key instead (by probing context.Cause) was rejected: a Go release could
// break it silently. The custom context is kept because it pays: BenchmarkWorkNoopS8 (the
// engine without librdkafka) takes about half the time and fewer than half the allocations
// with it than with a context.WithDeadline per message (docs/performance.md).
//
// Who calls it: processor.go's process starts and finishes it around each handler call.

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

type procCtx struct {
	parent   context.Context
	deadline time.Time

	mu       sync.Mutex // serialises the creation of real
	real     atomic.Pointer[realCtx]
	finished atomic.Bool // the processor returned: the context counts as cancelled
}

// realCtx is the standard context made on first Done.
type realCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// start prepares the context for a new processor call.
func (c *procCtx) start(parent context.Context, deadline time.Time) {
	c.parent = parent
	c.deadline = deadline
	c.real.Store(nil)
	c.finished.Store(false)
}

// finish marks the processor returned: its context is cancelled from now on.
func (c *procCtx) finish() {
	c.mu.Lock()
	c.finished.Store(true)
	r := c.real.Load()
	c.mu.Unlock()
	if r != nil {
		r.cancel()
	}
}

// materialize returns the real context, creating it on first use.
func (c *procCtx) materialize() *realCtx {
	if r := c.real.Load(); r != nil {
		return r
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.real.Load(); r != nil {
		return r
	}
	ctx, cancel := context.WithDeadline(c.parent, c.deadline)
	r := &realCtx{ctx: ctx, cancel: cancel}
	if c.finished.Load() {
		cancel()
	}
	c.real.Store(r)
	return r
}

// Deadline is the earlier of the parent's deadline and the process timeout.
func (c *procCtx) Deadline() (time.Time, bool) {
	if d, ok := c.parent.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

// Done returns a channel closed at the deadline, when the parent is done, or when the
// processor has returned.
func (c *procCtx) Done() <-chan struct{} { return c.materialize().ctx.Done() }

// Err reports why the context is done, or nil.
func (c *procCtx) Err() error {
	if r := c.real.Load(); r != nil {
		return r.ctx.Err()
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if c.finished.Load() {
		return context.Canceled
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value returns the parent's values. Once the context is done it answers from the real
// context, made then if need be, so that context.Cause reports why it is done.
func (c *procCtx) Value(key any) any {
	if r := c.real.Load(); r != nil {
		return r.ctx.Value(key)
	}
	if c.Err() != nil {
		return c.materialize().ctx.Value(key)
	}
	return c.parent.Value(key)
}

// timedOut reports whether the call ran into its deadline (or the parent's).
func (c *procCtx) timedOut(now time.Time) bool {
	if !now.Before(c.deadline) {
		return true
	}
	if d, ok := c.parent.Deadline(); ok && !now.Before(d) {
		return true
	}
	return false
}
