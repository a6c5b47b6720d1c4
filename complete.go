package zkafka

// What becomes of a message once its handler returned (or the watchdog gave up on it): a
// transient failure with attempts left is parked for its retry (retry.go, parking.go); any
// other outcome is reported to the circuit breaker by its class (errclass.go, G17), a failure
// is logged once, counted (failcount.go) and dead-lettered (deadletter.go, G5), and the message
// is marked Done for the commit tracker (commit.go) and handed to the OnDone callbacks.
//
// Invariant: a message is marked Done only after its handler succeeded or its last failure
// was dead-lettered (or needs no dead letter); a parked message is not Done; every path lets
// go of the message exactly once (letGo), ending its turn in the parking when it had one.
//
// The processors (processor.go) call complete after each run of the handler, and letGo for a
// message they drop unprocessed.

import (
	"context"
	"time"
)

// completion is the part of the processors that completes messages.
type completion struct {
	rs     *runState
	log    Logger
	onDone []func(ctx context.Context, msg *Message, err error)
	dlt    *deadLetterWriter // nil: failures are not dead-lettered
	retry  *RetryPolicy      // nil: no retries
	counts *failureCounters  // the Work's counts of failed messages
}

// letGo releases m, finished or not (runState.release), and ends its turn in the parking when
// it was taken from there.
func (c *completion) letGo(vp *virtualPartition, m *Message) {
	if m.taken {
		vp.settle(m)
	}
	c.rs.release(m)
}

// complete records the outcome of a processed message: the retry (parking it), or the
// breaker, the dead letter, the commit tracker and the OnDone callbacks, in that order.
// retryable is false for a handler the watchdog abandoned: it may still be running.
func (c *completion) complete(vp *virtualPartition, m *Message, err error, ticket breakerTicket, retryable bool) {
	ctx := m.ctx
	if ctx == nil {
		ctx = c.rs.ctx
	}
	if err == nil {
		ticket.report(breakerSuccess)
		c.finish(ctx, vp, m, nil)
		return
	}
	if wait, ok := c.retry.retryIn(m, err); ok && retryable {
		ticket.report(breakerRetrying)
		c.park(ctx, vp, m, wait, err)
		return
	}
	perr, isPE := processError(err)
	class := classify(err)
	if class == classPermanent || (isPE && perr.DisableCircuitBreak) {
		ticket.report(breakerUncounted)
	} else {
		ticket.report(breakerFailure)
	}
	dlt := c.dlt != nil && (!isPE || !perr.DisableDLTWrite)
	c.counts.failed(ctx, c.rs.failures, m, err, class, dlt)
	if dlt {
		// The processor goes on while the broker acknowledges; m is finished after.
		c.dlt.start(ctx, c.cut(vp, m), m, err, &deadLettering{c: c, vp: vp, ctx: ctx, m: m, err: err})
		return
	}
	c.rs.metrics.skippedOne(m)
	c.finish(ctx, vp, m, err)
}

// deadLettering completes a message once its dead letter is written (deadLetterOwner).
type deadLettering struct {
	c       *completion
	vp      *virtualPartition
	ctx     context.Context
	m       *Message
	err     error
	stalled bool // the write failed at least once: counted in vp.stalls
}

// failing counts the write in vp.stalls: while it fails, vp takes no new message
// (processor.go, serve).
func (dl *deadLettering) failing() { dl.stalled = true; dl.vp.stalls.Add(1) }

// ended finishes the message once its dead letter was written, or lets go of it unfinished.
func (dl *deadLettering) ended(written bool) {
	c, vp, m := dl.c, dl.vp, dl.m
	if dl.stalled {
		vp.stalls.Add(-1)
		signal(vp.wake)
	}
	if !written {
		c.letGo(vp, m) // stays uncommitted and is read again later
		return
	}
	c.counts.deadLettered.Add(1)
	c.rs.metrics.deadLettered(m)
	c.finish(dl.ctx, vp, m, dl.err)
}

// finish marks m finished for the commit tracker, runs the OnDone callbacks and lets it go.
func (c *completion) finish(ctx context.Context, vp *virtualPartition, m *Message, err error) {
	m.DoneWithContext(ctx)
	for _, f := range c.onDone {
		if ferr := catch("OnDone callback", func() error { f(ctx, m, err); return nil }); ferr != nil {
			logFailure(ctx, c.rs.failures, "zkafka: OnDone callback failed", ferr, "topic", m.Topic)
		}
	}
	c.letGo(vp, m)
}

// park puts m, failed with a transient error, in its virtual partition's parking until its
// retry is due. At an abrupt stop, or when its partition is being revoked, m is let go of
// instead, unfinished: the partition's next reader runs it again.
func (c *completion) park(ctx context.Context, vp *virtualPartition, m *Message, wait time.Duration, err error) {
	m.retries++
	if now := time.Now(); c.rs.ctx.Err() == nil && vp.park(m, now.Add(wait), now, err) {
		c.counts.retried.Add(1)
		c.rs.metrics.retried(m)
		c.log.Debugw(ctx, "zkafka: processing failed; retrying", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
			"attempt", m.Attempt()-1, "retry_in", wait.String(), "error", err)
		return
	}
	c.letGo(vp, m)
}

// cut is what ends a wait of m on vp.
func (c *completion) cut(vp *virtualPartition, m *Message) waitCut {
	return waitCut{stopping: c.rs.stopping, done: c.rs.ctx.Done(), kick: vp.kick, m: m}
}
