package zkafka

// The processors of one Run: one goroutine per virtual partition takes its messages in order
// and carries each from its queue to finished — wait until due (ProcessDelayMillis, G9), pass
// the circuit breaker (breaker.go, G11), run the hooks, the span and the handler, fence its
// timeout (G10), then complete it: a transient failure with attempts left is parked for its
// retry (retry.go, parking.go); otherwise the breaker's count (errclass.go, G17), the dead
// letter (deadletter.go, G5), Done for the commit tracker (commit.go) and the OnDone
// callbacks. Between queued messages the processor runs the parked ones whose retry is due.
// A failure is logged once and counted (failcount.go); a dead letter is written on its own
// goroutine while the processor goes on, and its message is finished once the broker
// acknowledged it (deadLettering).
//
// The watchdog is the other half of the timeout. A processor publishes the message whose
// handler runs in vp.running (with vp.startedAt and the breaker's vp.ticket); whoever clears
// running with a compare-and-swap owns the message's outcome. When the handler returns first,
// the processor completes it. When the handler outlives its timeout by the grace period, the
// watchdog takes it, completes it as failed, and starts a replacement goroutine under a new
// vp.gen; the stuck goroutine, when its handler returns, sees that it lost and exits.
//
// Invariant: every message a processor pops is released exactly once (runState.release),
// finished or not, and is marked Done only if its handler succeeded or its last failure was
// dead-lettered or needs no dead letter — never on an abrupt stop (G4), never while it waits
// for a retry. Every path lets go of the message through letGo, which ends its turn in the
// parking when it was taken from there.
//
// Work.start creates the processors; runState.stop closes the queues and waits for them.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// processors runs the handler of one Run over its virtual partitions.
//
// Guards: every field but wg is immutable once start returned (newProcessors sets them,
// start watchDone); the serving goroutines, the watchdog, the goroutines of abandon and the
// dead letter writer's (deadLettering) share them read-only. What changes per message lives in
// the virtualPartition (its own guards) and the Message (owned by whoever holds it).
type processors struct {
	rs        *runState
	around    instrumentation // the span and hooks around each call (instrument.go)
	handler   processor
	gate      *breaker      // nil: no circuit breaker; safe for concurrent use
	abandoned *atomic.Int64 // atomic: the Work's count of abandoned handlers
	suspects  *suspicion    // lets suspects into their handlers (poison.go); its own guards

	batcher BatchProcessor // set instead of handler for a batch Work (batch_processor.go)
	batch   BatchPolicy    // the batch Work's, defaults filled in

	log    Logger
	onDone []func(ctx context.Context, msg *Message, err error)
	dlt    *deadLetterWriter // nil: failures are not dead-lettered; its own guards
	retry  *RetryPolicy      // nil: no retries
	counts *failureCounters  // atomic: the Work's counts of failed messages

	// chain: nothing of the user's runs between a handler's successful return and the next
	// message's start (no span, no Pre- or PostProcessing hook, no OnDone callback, no
	// ProcessDelayMillis), so serve takes the one's end, read when it returned, as the time
	// the next one starts, when it went straight on to it: one reading of the clock a message
	// fewer (60–70 ns on some machines; the two readings were an eighth of the CPU of
	// BenchmarkWorkNoopS8). The start is then early by the hand-over between the two (under a
	// microsecond, unless the goroutine is descheduled there): the handler's deadline and its
	// measured duration grow by as much.
	chain bool

	timeout time.Duration // ProcessTimeoutMillis (always set: default 60 s)
	grace   time.Duration // how long past its timeout a handler is waited for
	delay   time.Duration // ProcessDelayMillis

	wg        sync.WaitGroup // one per virtual partition: its serving goroutine (Add by start, Wait by stop)
	watchDone chan struct{}  // made by start; closed by the watchdog when it has exited
}

// start runs one goroutine per virtual partition, and the watchdog.
// exited is closed by the stop once every serving goroutine has exited.
func (p *processors) start(vps []*virtualPartition, exited <-chan struct{}) {
	p.watchDone = make(chan struct{})
	for _, vp := range vps {
		p.wg.Add(1)
		if p.batcher != nil {
			go p.serveBatch(vp, vp.gen.Load())
		} else {
			go p.serve(vp, vp.gen.Load())
		}
	}
	go p.watchdog(vps, exited)
}

// waitCut is what ends a message's wait (for its delay, the breaker, or a dead letter retry)
// before it is due: the run stopping, an abrupt cancel, or a revoke of its partition (the
// revoke kicks the virtual partition; the message's tracker says whether it is the one).
type waitCut struct {
	stopping <-chan struct{}
	done     <-chan struct{}
	kick     <-chan struct{}
	m        *Message
	b        *batchRun // instead of m: a batch waits (batch_processor.go)
}

// revoked reports whether the message's partition is being revoked (for a batch: the
// partition of any of its messages).
func (c waitCut) revoked() bool {
	if c.b != nil {
		return c.b.revoking()
	}
	return c.m.trk != nil && c.m.trk.Revoking()
}

// sleep waits for t or wake. It returns false when the message must be let go of instead.
func (c waitCut) sleep(t <-chan time.Time, wake <-chan struct{}) bool {
	for {
		select {
		case <-t:
			return true
		case <-wake:
			return true
		case <-c.stopping:
			return false
		case <-c.done:
			return false
		case <-c.kick:
			if c.revoked() {
				return false
			}
		}
	}
}

// cut is what ends a wait of m on vp.
func (p *processors) cut(vp *virtualPartition, m *Message) waitCut {
	return waitCut{stopping: p.rs.stopping, done: p.rs.ctx.Done(), kick: vp.kick, m: m}
}

// serve is the goroutine of one virtual partition, for generation gen. It runs queued
// messages and, between them, parked ones whose retry is due (parking.go).
func (p *processors) serve(vp *virtualPartition, gen uint64) {
	rs := p.rs
	var retryTimer *time.Timer // wakes the goroutine when the first parked message is due
	// ended is when the last handler returned, while the goroutine went straight on from it
	// (chain); zero otherwise. Each turn of the loop takes it and clears it: only a turn that
	// runs a message sets it again, so a wait (a stall, an idle queue) in between clears it.
	var ended time.Time
	for {
		last := ended
		ended = time.Time{}
		if vp.gen.Load() != gen {
			return // replaced by the watchdog; the replacement owns the WaitGroup slot
		}
		if vp.stalls.Load() > 0 && rs.ctx.Err() == nil {
			// A dead letter of this virtual partition fails to be written: wait until it is
			// written or let go of (its write wakes vp), as if the processor wrote it itself.
			p.idle(vp, 0, nil)
			continue
		}
		m, wait, ok, closed := vp.next()
		if !ok {
			if closed || rs.ctx.Err() != nil {
				for _, m := range vp.unpark() {
					rs.release(m) // a stop lets go of messages waiting for a retry, unfinished
				}
				p.wg.Done()
				return
			}
			retryTimer = p.idle(vp, wait, retryTimer)
			continue
		}
		if rs.ctx.Err() != nil {
			p.letGo(vp, m) // abrupt stop: not processed, not finished
			continue
		}
		if testHookPopped != nil {
			testHookPopped(m)
		}
		vp.busy.Store(m)
		if m.trk != nil && m.trk.Revoking() {
			// Popped while its partition was being revoked, before busy told revoked to wait
			// for it: the partition's next owner reads it again. (revoked sets revoking, then
			// reads busy; this sets busy, then reads revoking: one of the two sees the other.)
			vp.busy.Store(nil)
			p.letGo(vp, m)
			continue
		}
		if ended, ok = p.handle(vp, m, gen, last); !ok {
			return // abandoned: the replacement goroutine finishes m
		}
		vp.busy.Store(nil)
	}
}

// idle waits for a push, for the first parked message to be due (wait > 0) or for the abrupt
// stop. It returns the timer it used, to be used again.
func (p *processors) idle(vp *virtualPartition, wait time.Duration, t *time.Timer) *time.Timer {
	var due <-chan time.Time
	if wait > 0 {
		if t == nil {
			t = time.NewTimer(wait)
		} else {
			t.Reset(wait)
		}
		due = t.C
	}
	if vp.eager.Load() && !vp.slowLately() {
		vp.eager.Store(false)
	}
	select {
	case <-vp.wake:
	case <-due:
	case <-p.rs.ctx.Done():
	}
	return t
}

// handle takes one message from its wait to finished. It returns false when the handler was
// abandoned by the watchdog (the caller must exit). ended is when the handler before returned,
// if the goroutine went straight on from it (chain; zero otherwise): the time m starts, when
// nothing waits before its handler; handle returns its own handler's end likewise.
func (p *processors) handle(vp *virtualPartition, m *Message, gen uint64, ended time.Time) (time.Time, bool) {
	rs := p.rs
	if m.admit == admitNever {
		p.quarantine(vp, m) // poison.go
		return time.Time{}, true
	}
	if !p.hold(m, p.cut(vp, m)) {
		p.letGo(vp, m)
		return time.Time{}, true
	}
	var ticket breakerTicket
	if p.gate != nil {
		var ok bool
		if ticket, ok = p.gate.admit(p.cut(vp, m)); !ok {
			p.letGo(vp, m)
			return time.Time{}, true
		}
		if ticket.closed == nil {
			ended = time.Time{} // admitted half-open, after a wait perhaps
		}
	}
	if m.admit != admitFree {
		ended = time.Time{} // a suspect may wait for its turn
		if !p.suspects.enter(p.cut(vp, m)) {
			ticket.report(breakerUncounted)
			p.letGo(vp, m)
			return time.Time{}, true
		}
	}
	looked, ok := p.rs.fence().passAt(p.cut(vp, m), ended) // G19: membership in doubt (fence.go)
	if !ok {
		ticket.report(breakerUncounted)
		p.letGo(vp, m)
		return time.Time{}, true
	}
	vp.ticket = ticket
	abandoned, end, err := p.process(vp, m, gen, looked)
	if m.admit == admitMarked {
		p.suspects.leave(m)
	}
	if abandoned {
		return time.Time{}, false
	}
	if rs.ctx.Err() != nil {
		// Abrupt stop while the handler ran: its outcome is not trusted (G4).
		ticket.report(breakerUncounted)
		p.letGo(vp, m)
		return time.Time{}, true
	}
	p.complete(vp, m, err, ticket, true)
	if err != nil || !p.chain {
		return time.Time{}, true // a failure logs, parks or dead-letters: not a straight hand-over
	}
	return end, true
}

// hold waits until the message is due (ProcessDelayMillis, G9). It returns false when the
// message must be let go of unfinished (stop, or its partition is being revoked).
func (p *processors) hold(m *Message, cut waitCut) bool {
	if p.delay <= 0 {
		return true
	}
	wait := time.Until(m.TimeStamp.Add(p.delay))
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	return cut.sleep(t.C, nil)
}

// process runs the hooks, the span and the handler. abandoned is true when the watchdog gave
// up on the handler while it ran. A non-zero now is the time just read before the call (the
// fence's look): the handler's start when no span or hook runs first. end is when the handler
// returned.
func (p *processors) process(vp *virtualPartition, m *Message, gen uint64, now time.Time) (abandoned bool, end time.Time, err error) {
	ctx := m.ctx
	if ctx == nil {
		ctx = p.rs.ctx
	}
	if p.around.tracer != nil {
		var span trace.Span
		ctx, span = p.around.startSpan(ctx, m)
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
	}
	ctx = p.around.preProcessing(ctx, vp, m)
	start := now
	if start.IsZero() || p.around.tracer != nil || p.around.hooks.PreProcessing != nil {
		start = time.Now() // a span or a hook ran since the fence looked
	}
	// Like context.WithTimeout, without a timer or an allocation (see procCtx).
	pc := &m.pctx
	if m.retries > 0 {
		pc = new(procCtx) // a retry's context is not the one an earlier run may have kept
	}
	pc.start(ctx, start.Add(p.timeout))
	ctx = pc
	vp.startedAt.Store(start.UnixNano())
	vp.running.Store(m)
	if m.hookErr != nil {
		err = m.hookErr // a hook panicked: the message fails without running the processor
	} else {
		err = p.call(ctx, m)
	}
	if !vp.running.CompareAndSwap(m, nil) {
		pc.finish()
		return true, time.Time{}, nil // the watchdog took over this message
	}
	end = time.Now()
	vp.handlerRan(start, end)
	if pc.timedOut(end) && p.rs.ctx.Err() == nil {
		if err == nil {
			err = fmt.Errorf("%w (%s)", errProcessTimeout, p.timeout)
		} else {
			err = fmt.Errorf("%w (%s): %w", errProcessTimeout, p.timeout, err)
		}
	}
	pc.finish()
	err = p.around.postProcessing(ctx, vp, m, start, err)
	if mt := p.rs.metrics; mt != nil {
		// pc's parent, not pc: a Value of a finished procCtx makes it a real context. Without a
		// tracer no span is there for an exemplar: not looking for one saves a context walk.
		mctx := context.Background()
		if p.around.tracer != nil {
			mctx = pc.parent
		}
		mt.processed(mctx, m, end.Sub(start), err)
	}
	return false, end, err
}

// call runs the handler, turning a panic into an error. The panic is logged with the
// message's failure (failureCounters.failed): the first of a run with its stack, the rest
// summarised.
func (p *processors) call(ctx context.Context, m *Message) error {
	return catch("processor", func() error { return p.handler.Process(ctx, m) })
}

// complete records the outcome of a processed message: the retry (parking it), or the
// breaker, the dead letter, the commit tracker and the OnDone callbacks, in that order.
// retryable is false for a handler the watchdog abandoned: it may still be running.
func (p *processors) complete(vp *virtualPartition, m *Message, err error, ticket breakerTicket, retryable bool) {
	ctx := m.ctx
	if ctx == nil {
		ctx = p.rs.ctx
	}
	if err == nil {
		ticket.report(breakerSuccess)
		p.finish(ctx, vp, m, nil)
		return
	}
	if wait, ok := p.retry.retryIn(m, err); ok && retryable {
		ticket.report(breakerRetrying)
		p.park(ctx, vp, m, wait, err)
		return
	}
	perr, isPE := processError(err)
	class := classify(err)
	ticket.report(finalOutcome(class, perr, isPE))
	dlt := p.dlt != nil && (!isPE || !perr.DisableDLTWrite)
	p.counts.failed(ctx, p.rs.failures, m, err, class, dlt)
	if dlt {
		// The processor goes on while the broker acknowledges; m is finished after.
		p.dlt.start(ctx, p.cut(vp, m), m, err, &deadLettering{p: p, vp: vp, ctx: ctx, m: m, err: err})
		return
	}
	p.rs.metrics.skippedOne(m)
	p.finish(ctx, vp, m, err)
}

// finalOutcome is what a final failure of class tells the breaker: uncounted when it is the
// message's own fault (G17) or its ProcessError disables the circuit break, else a failure.
func finalOutcome(class errClass, perr ProcessError, isPE bool) breakerOutcome {
	if class == classPermanent || (isPE && perr.DisableCircuitBreak) {
		return breakerUncounted
	}
	return breakerFailure
}

// deadLettering completes a message once its dead letter is written (deadLetterOwner).
type deadLettering struct {
	p       *processors
	vp      *virtualPartition
	ctx     context.Context
	m       *Message
	err     error
	stalled bool // the write failed at least once: counted in vp.stalls
}

// failing counts the write in vp.stalls: while it fails, vp takes no new message (serve).
func (dl *deadLettering) failing() { dl.stalled = true; dl.vp.stalls.Add(1) }

// ended finishes the message once its dead letter was written, or lets go of it unfinished.
func (dl *deadLettering) ended(written bool) {
	p, vp, m := dl.p, dl.vp, dl.m
	if dl.stalled {
		vp.stalls.Add(-1)
		signal(vp.wake)
	}
	if !written {
		p.letGo(vp, m) // stays uncommitted and is read again later
		return
	}
	p.counts.deadLettered.Add(1)
	p.rs.metrics.deadLettered(m)
	p.finish(dl.ctx, vp, m, dl.err)
}

// finish marks m finished for the commit tracker, runs the OnDone callbacks and lets it go.
func (p *processors) finish(ctx context.Context, vp *virtualPartition, m *Message, err error) {
	m.DoneWithContext(ctx)
	for _, f := range p.onDone {
		if ferr := catch("OnDone callback", func() error { f(ctx, m, err); return nil }); ferr != nil {
			logFailure(ctx, p.rs.failures, "zkafka: OnDone callback failed", ferr, "topic", m.Topic)
		}
	}
	p.letGo(vp, m)
}

// park puts m, failed with a transient error, in its virtual partition's parking until its
// retry is due. At an abrupt stop, or when its partition is being revoked, m is let go of
// instead, unfinished: the partition's next reader runs it again.
func (p *processors) park(ctx context.Context, vp *virtualPartition, m *Message, wait time.Duration, err error) {
	m.retries++
	if now := time.Now(); p.rs.ctx.Err() == nil && vp.park(m, now.Add(wait), now, err) {
		p.counts.retried.Add(1)
		p.rs.metrics.retried(m)
		p.log.Debugw(ctx, "zkafka: processing failed; retrying", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
			"attempt", m.Attempt()-1, "retry_in", wait.String(), "error", err)
		return
	}
	p.letGo(vp, m)
}

// letGo releases m, finished or not (runState.release), and ends its turn in the parking when
// it was taken from there.
func (p *processors) letGo(vp *virtualPartition, m *Message) {
	if m.taken {
		vp.settle(m)
	}
	p.rs.release(m)
}

// watchdog abandons handlers that outlive their timeout by the grace period (G10). It exits
// when exited closes (every serving goroutine is gone) or at an abrupt stop.
func (p *processors) watchdog(vps []*virtualPartition, exited <-chan struct{}) {
	defer close(p.watchDone)
	t := time.NewTicker(min(max(p.grace/4, watchdogMinTick), watchdogMaxTick))
	defer t.Stop()
	limit := (p.timeout + p.grace).Nanoseconds()
	for {
		select {
		case <-t.C:
		case <-exited:
			return
		case <-p.rs.ctx.Done():
			return
		}
		now := time.Now().UnixNano()
		for _, vp := range vps {
			if b := vp.runningBatch.Load(); b != nil {
				if now-vp.startedAt.Load() >= limit && vp.runningBatch.CompareAndSwap(b, nil) {
					p.abandonBatch(vp, b)
				}
				continue
			}
			m := vp.running.Load()
			if m == nil || now-vp.startedAt.Load() < limit || !vp.running.CompareAndSwap(m, nil) {
				continue
			}
			p.abandon(vp, m)
		}
	}
}

// abandon completes m, whose handler the watchdog took from vp, as failed and starts a
// replacement goroutine for vp.
func (p *processors) abandon(vp *virtualPartition, m *Message) {
	p.abandoned.Add(1)
	p.rs.metrics.abandon(m, time.Duration(time.Now().UnixNano()-vp.startedAt.Load()))
	const msg = "zkafka: handler still running after its timeout and grace period; abandoning it and moving on"
	p.rs.failures.log(p.rs.ctx, levelError, msg+"\x00"+m.Topic, msg,
		"topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "virtual_partition", vp.idx)
	gen := vp.gen.Add(1)
	go func() {
		err := fmt.Errorf("%w (%s) and did not return within the grace period (%s)", errProcessTimeout, p.timeout, p.grace)
		p.complete(vp, m, err, vp.ticket, false)
		vp.busy.Store(nil)
		p.serve(vp, gen)
	}()
}

// testHookPopped, when set by a test, is called by a processor goroutine for every message it
// takes from its queue, before it marks the message busy.
var testHookPopped func(*Message)
