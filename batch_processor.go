package zkafka

// The processors of a batch Work (WorkFactory.CreateBatch; batch.go states what a batch
// promises). As for single messages (processor.go), one goroutine per virtual partition runs
// its messages in order; serveBatch takes the next message its virtual partition may run
// (vp.next: a due retry, else the oldest queued message whose key has nothing parked), holds it
// until due (ProcessDelayMillis, G9), fills a batch behind it (vp.nextIf, by BatchPolicy:
// only due messages that are not suspects; a suspect runs alone), passes the circuit breaker
// once, runs PreProcessing per message, ProcessBatch once under one procCtx (G10), and
// PostProcessing per message. completeBatch then completes each message in read order through
// processor.go's complete (success, or final failure: dead letter or skip) or park (a retry);
// the later messages of a key whose message was parked join it in the parking, whatever
// their own result, so the key's order holds (G2); the breaker hears the batch's outcome once.
//
// A batch is published in vp.batch from its first message until every message is let go of
// (revoke.go waits for it, Work.Status shows it) and in vp.runningBatch while ProcessBatch runs
// (the watchdog abandons it as a whole: every message fails with the timeout, no retry).
// Waits before the start (delay, MaxWait, breaker) end at a stop or a cancel (every message is
// let go of, unfinished), or at a revoke (the messages of revoked partitions are let go of and
// the rest wait on): a batch that has not started is never run by two owners, one that has is
// finished, or abandoned, as a whole.
//
// Invariant: every message taken into a batch is released exactly once (runState.release),
// finished only as processor.go's invariant says; a batch's messages are of one virtual
// partition, in the order vp.next gave them, and no message of a key runs while an earlier one
// of the key is parked or taken.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// batchRun is the batch one virtual partition's processor has taken.
//
// Guards: msgs is written under mu by the goroutine that owns the batch (the serving
// goroutine; after an abandon, the goroutine completing it) and read under mu by revokes and
// Work.Status; its owner reads it without the lock. The rest is the owner's.
type batchRun struct {
	mu   sync.Mutex
	msgs []*Message // in read order

	errs     []error       // the outcome of each message of msgs
	call     []*Message    // what ProcessBatch gets: msgs without those a hook failed
	callIdx  []int         // the index in msgs of each of call
	bytes    int           // payload bytes of msgs
	now      time.Time     // when the batch last read the clock (accepts)
	maxBytes int           // BatchPolicy.MaxBytes
	delay    time.Duration // ProcessDelayMillis

	// fillUntil is when the batch stops waiting for more messages (UnixNano) while it waits
	// (fill), else 0: for Work.Status. Atomic.
	fillUntil atomic.Int64
}

// accepts reports whether m may join the filling batch (vp.nextIf): free to run or only
// waiting for a commit of its read (not a suspect, which runs alone, nor a poison pill),
// within MaxBytes, and due.
func (b *batchRun) accepts(m *Message) bool {
	return (m.admit == admitFree || m.admit == admitRecorded) && b.bytes+len(m.value) <= b.maxBytes &&
		(b.delay <= 0 || !m.TimeStamp.Add(b.delay).After(b.now))
}

// add appends m.
func (b *batchRun) add(m *Message) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
	b.bytes += len(m.value)
}

// clear empties the batch.
func (b *batchRun) clear() {
	b.mu.Lock()
	clear(b.msgs)
	b.msgs = b.msgs[:0]
	b.mu.Unlock()
	b.bytes = 0
}

// holds reports whether a message of the batch is one for which in is true (revoke.go).
func (b *batchRun) holds(in func(*Message) bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.msgs {
		if in(m) {
			return true
		}
	}
	return false
}

// revoking reports whether the partition of a message of the batch is being revoked.
func (b *batchRun) revoking() bool {
	return b.holds(func(m *Message) bool { return m.trk != nil && m.trk.Revoking() })
}

// removeRevoked takes the messages whose partition is being revoked out of the batch, keeping
// the order of the rest, and returns them.
func (b *batchRun) removeRevoked() []*Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	var dropped []*Message
	b.msgs = filter(b.msgs, func(m *Message) bool { return m.trk != nil && m.trk.Revoking() }, &dropped)
	for _, m := range dropped {
		b.bytes -= len(m.value)
	}
	return dropped
}

// serveBatch is the goroutine of one virtual partition of a batch Work, for generation gen:
// serve's loop (processor.go) with a batch for each message it takes.
func (p *processors) serveBatch(vp *virtualPartition, gen uint64) {
	rs := p.rs
	b := &batchRun{msgs: make([]*Message, 0, min(p.batch.MaxMessages, 1024)), maxBytes: p.batch.MaxBytes, delay: p.delay}
	var retryTimer *time.Timer
	for {
		if vp.gen.Load() != gen {
			return // replaced by the watchdog; the replacement owns the WaitGroup slot
		}
		if vp.stalls.Load() > 0 && rs.ctx.Err() == nil {
			p.idle(vp, 0, nil) // a failing dead letter write stalls the virtual partition
			continue
		}
		m, wait, ok, closed := vp.next()
		if !ok {
			if closed || rs.ctx.Err() != nil {
				for _, m := range vp.unpark() {
					rs.release(m)
				}
				p.wg.Done()
				return
			}
			retryTimer = p.idle(vp, wait, retryTimer)
			continue
		}
		if rs.ctx.Err() != nil {
			p.letGo(vp, m)
			continue
		}
		if !p.takeInto(vp, b, m) {
			continue
		}
		if !p.handleBatch(vp, b) {
			return // abandoned: the replacement goroutine completes the batch
		}
	}
}

// takeInto adds m, taken from vp, to b and publishes b; it reports false when m's partition
// is being revoked: m is let go of, with any message of b whose partition is too (see serve
// for the order of the two looks: b is published, then the partition looked at).
func (p *processors) takeInto(vp *virtualPartition, b *batchRun, m *Message) bool {
	if testHookPopped != nil {
		testHookPopped(m)
	}
	b.add(m)
	if len(b.msgs) == 1 {
		vp.batch.Store(b)
	}
	if m.trk == nil || !m.trk.Revoking() {
		return true
	}
	for _, m := range b.removeRevoked() {
		p.letGo(vp, m)
	}
	if len(b.msgs) == 0 {
		vp.batch.Store(nil)
	}
	return false
}

// handleBatch takes the batch b, started with one message, from its wait to finished. It
// returns false when ProcessBatch was abandoned by the watchdog (the caller must exit).
func (p *processors) handleBatch(vp *virtualPartition, b *batchRun) (live bool) {
	rs := p.rs
	defer func() {
		if live { // the batch is over (an abandoned one is abandonBatch's, and its handler's)
			b.clear()
			vp.batch.Store(nil)
		}
	}()
	first := b.msgs[0]
	if first.admit == admitNever {
		p.quarantine(vp, first) // poison.go
		return true
	}
	if !p.hold(first, p.cut(vp, first)) {
		p.letGo(vp, first)
		return true
	}
	if first.admit != admitMarked {
		p.fill(vp, b)
		if len(b.msgs) == 0 {
			return true
		}
	}
	var ticket breakerTicket
	for p.gate != nil {
		var ok bool
		if ticket, ok = p.gate.admit(p.batchCut(vp, b)); ok {
			break
		}
		if !p.cutShort(vp, b) {
			return true
		}
	}
	if !p.enterBatch(vp, b) {
		ticket.report(breakerUncounted)
		return true
	}
	for !p.rs.fence().pass(p.batchCut(vp, b)) { // G19: membership in doubt (fence.go)
		if !p.cutShort(vp, b) {
			ticket.report(breakerUncounted)
			return true
		}
	}
	vp.ticket = ticket
	abandoned := p.processBatch(vp, b)
	if first.admit == admitMarked {
		p.suspects.leave(first)
	}
	if abandoned {
		return false
	}
	if rs.ctx.Err() != nil {
		ticket.report(breakerUncounted) // abrupt stop: the outcome is not trusted (G4)
		for _, m := range b.msgs {
			p.letGo(vp, m)
		}
		return true
	}
	p.completeBatch(vp, b.msgs, b.errs, ticket, true)
	return true
}

// enterBatch lets the batch's messages into the handler as suspicion.enter says (poison.go): a
// suspect, alone in its batch, after a commit marks it; a message read in its partition's
// window once a commit says it was read (one commit covers the partition's reads so far). A
// message that may not enter (a revoke, the reader closed) is let go of. It reports whether
// any message is left to run.
func (p *processors) enterBatch(vp *virtualPartition, b *batchRun) bool {
	if b.msgs[0].admit == admitMarked {
		if p.suspects.enter(p.cut(vp, b.msgs[0])) {
			return true
		}
		p.letGo(vp, b.msgs[0])
		return false
	}
	var out []*Message
	for _, m := range b.msgs {
		if m.admit == admitRecorded && !p.suspects.enter(p.cut(vp, m)) {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return true
	}
	b.mu.Lock()
	var dropped []*Message
	b.msgs = filter(b.msgs, func(m *Message) bool {
		for _, o := range out {
			if o == m {
				return true
			}
		}
		return false
	}, &dropped)
	b.mu.Unlock()
	for _, m := range dropped {
		b.bytes -= len(m.value)
		p.letGo(vp, m)
	}
	return len(b.msgs) > 0
}

// batchCut is what ends a wait of the batch b on vp before it starts.
func (p *processors) batchCut(vp *virtualPartition, b *batchRun) waitCut {
	return waitCut{stopping: p.rs.stopping, done: p.rs.ctx.Done(), kick: vp.kick, b: b}
}

// cutShort handles a wait of b cut short: at a stop or a cancel every message is let go of
// (unfinished: not started); at a revoke those of revoked partitions are. It reports whether
// messages are left to wait on.
func (p *processors) cutShort(vp *virtualPartition, b *batchRun) bool {
	select {
	case <-p.rs.stopping:
	case <-p.rs.ctx.Done():
	default:
		for _, m := range b.removeRevoked() {
			p.letGo(vp, m)
		}
		return len(b.msgs) > 0
	}
	for _, m := range b.msgs {
		p.letGo(vp, m)
	}
	b.clear()
	return false
}

// fill takes the messages queued behind the batch's first one into b, as BatchPolicy allows,
// waiting up to MaxWait (from now) for more while the queue is dry.
func (p *processors) fill(vp *virtualPartition, b *batchRun) {
	rs := p.rs
	b.now = time.Now()
	var deadline time.Time
	var timer *time.Timer
	var wasEager bool // before the batch waited to fill
	defer func() {
		b.fillUntil.Store(0)
		if timer != nil {
			timer.Stop()
			vp.eager.Store(wasEager) // the batch runs: what is handed over meanwhile waits for it
		}
	}()
	for len(b.msgs) < p.batch.MaxMessages {
		m, refused, closed := vp.nextIf(b)
		if m != nil {
			if rs.ctx.Err() != nil {
				p.letGo(vp, m)
				continue
			}
			p.takeInto(vp, b, m)
			continue
		}
		if refused || closed || p.batch.MaxWait <= 0 {
			return
		}
		if deadline.IsZero() {
			deadline = b.now.Add(p.batch.MaxWait)
			wasEager = vp.eager.Load()
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		b.fillUntil.Store(deadline.UnixNano())
		vp.eager.Store(true) // what the reader hands over joins the batch at once
		select {
		case <-vp.wake:
		case <-timer.C:
			return
		case <-rs.stopping:
			return // a graceful stop runs what is queued: no more waiting
		case <-rs.ctx.Done():
			return
		case <-vp.kick:
			for _, m := range b.removeRevoked() {
				p.letGo(vp, m)
			}
			if len(b.msgs) == 0 {
				return
			}
		}
		b.now = time.Now()
	}
}

// processBatch runs the span, the hooks and ProcessBatch, and sets b.errs to each message's
// outcome. It returns true when the watchdog gave up on ProcessBatch while it ran.
func (p *processors) processBatch(vp *virtualPartition, b *batchRun) (abandoned bool) {
	msgs := b.msgs
	if cap(b.errs) < len(msgs) {
		b.errs = make([]error, len(msgs))
	} else {
		b.errs = b.errs[:len(msgs)]
		clear(b.errs)
	}
	errs := b.errs
	ctx := p.rs.ctx
	var whole error // the error of the whole batch, for the span
	if p.around.tracer != nil {
		var span trace.Span
		ctx, span = p.around.startBatchSpan(ctx, msgs)
		defer func() {
			if whole != nil {
				span.RecordError(whole)
				span.SetStatus(codes.Error, whole.Error())
			}
			span.End()
		}()
	}
	hookFailed := false
	for i, m := range msgs {
		p.around.preProcessing(ctx, vp, m) // per message; the contexts it returns are not passed on
		if m.hookErr != nil {
			errs[i] = m.hookErr // a hook panicked: the message fails without running
			hookFailed = true
		}
	}
	call, callIdx := msgs, b.callIdx[:0] // callIdx empty: call is msgs
	if hookFailed {
		call = b.call[:0]
		for i, m := range msgs {
			if m.hookErr == nil {
				call = append(call, m)
				callIdx = append(callIdx, i)
			}
		}
		b.call, b.callIdx = call, callIdx
	}
	start := time.Now()
	pc := new(procCtx) // one per batch: a handler may keep its context
	pc.start(ctx, start.Add(p.timeout))
	vp.startedAt.Store(start.UnixNano())
	vp.runningBatch.Store(b)
	var err error
	if len(call) > 0 {
		err = catch("processor", func() error { return p.batcher.ProcessBatch(pc, call) })
	}
	if !vp.runningBatch.CompareAndSwap(b, nil) {
		pc.finish()
		return true // the watchdog took over this batch
	}
	end := time.Now()
	vp.handlerRan(start, end)
	timedOut := pc.timedOut(end) && p.rs.ctx.Err() == nil
	pc.finish()
	whole = spreadBatchError(err, timedOut, p.timeout, len(call), callIdx, errs)
	for i, m := range msgs {
		errs[i] = p.around.postProcessing(ctx, vp, m, start, errs[i])
	}
	if mt := p.rs.metrics; mt != nil {
		mctx := context.Background()
		if p.around.tracer != nil {
			mctx = ctx
		}
		mt.processedBatch(mctx, msgs[0], len(msgs), end.Sub(start), err, whole)
	}
	return false
}

// spreadBatchError sets errs, the outcome of each message of a batch, from err, what
// ProcessBatch returned for the n messages it got (callIdx: their indexes in the batch; empty
// when it got them all). A *BatchError fails the messages it names; anything else fails them
// all. A batch that timed out fails them all with the timeout, unless ProcessBatch answered
// its cancelled context with a *BatchError: then the messages it names fail with the timeout
// (and their own error), and the others, which it says it finished, succeed. It returns the
// error of the whole batch, nil for a success or a partial failure.
func spreadBatchError(err error, timedOut bool, timeout time.Duration, n int, callIdx []int, errs []error) (whole error) {
	at := func(i int) int {
		if len(callIdx) == 0 {
			return i
		}
		return callIdx[i]
	}
	be, isBatchErr := errors.AsType[*BatchError](err)
	for i, e := range be.failed() {
		if e != nil && (i < 0 || i >= n) {
			isBatchErr = false
			err = fmt.Errorf("zkafka: ProcessBatch returned a BatchError for index %d of a batch of %d: %w", i, n, err)
			break
		}
	}
	switch {
	case isBatchErr:
		for i, e := range be.Failed {
			if e != nil && timedOut {
				e = fmt.Errorf("%w (%s): %w", errProcessTimeout, timeout, e)
			}
			errs[at(i)] = e
		}
		return nil
	case timedOut && err == nil:
		whole = fmt.Errorf("%w (%s)", errProcessTimeout, timeout)
	case timedOut:
		whole = fmt.Errorf("%w (%s): %w", errProcessTimeout, timeout, err)
	default:
		whole = err
	}
	if whole != nil {
		for i := range n {
			errs[at(i)] = whole
		}
	}
	return whole
}

// completeBatch completes the messages of a processed batch in read order, each with its
// outcome in errs, as complete does a single message, and reports the batch's outcome to the
// breaker once on ticket. A message of a key whose earlier message in the batch waits for a
// retry (or was let go of) follows it: it joins the key in the parking, or is let go of, its
// own outcome discarded. retryable is false for a batch the watchdog abandoned.
func (p *processors) completeBatch(vp *virtualPartition, msgs []*Message, errs []error, ticket breakerTicket, retryable bool) {
	var held map[parkKey]struct{} // keys whose message of this batch waits for a retry
	var v batchVerdict
	for i, m := range msgs {
		err := errs[i]
		if held != nil && !m.isKeyNil {
			if _, ok := held[keyOf(m)]; ok {
				if !vp.joinParked(m) {
					p.letGo(vp, m)
				}
				continue
			}
		}
		if err == nil {
			v.ok++
			p.complete(vp, m, nil, breakerTicket{}, false)
			continue
		}
		if wait, ok := p.retry.retryIn(m, err); ok && retryable {
			v.retrying++
			ctx := m.ctx
			if ctx == nil {
				ctx = p.rs.ctx
			}
			p.park(ctx, vp, m, wait, err)
			if !m.isKeyNil {
				if held == nil {
					held = map[parkKey]struct{}{}
				}
				held[keyOf(m)] = struct{}{}
			}
			continue
		}
		perr, isPE := processError(err)
		if finalOutcome(classify(err), perr, isPE) == breakerFailure {
			v.failed++
		}
		p.complete(vp, m, err, breakerTicket{}, false)
	}
	ticket.report(v.outcome())
}

// batchVerdict counts the outcomes of a batch's messages for the breaker.
type batchVerdict struct {
	ok, retrying, failed int
}

// outcome is the batch's one outcome: a failure when a message failed for good with a counted
// error, else a success when one succeeded, else retrying when one will be retried, else (all
// failed by their own fault) uncounted.
func (v batchVerdict) outcome() breakerOutcome {
	switch {
	case v.failed > 0:
		return breakerFailure
	case v.ok > 0:
		return breakerSuccess
	case v.retrying > 0:
		return breakerRetrying
	}
	return breakerUncounted
}

// abandonBatch completes b, whose ProcessBatch the watchdog took from vp, as failed (every
// message, no retry) and starts a replacement goroutine for vp.
func (p *processors) abandonBatch(vp *virtualPartition, b *batchRun) {
	p.abandoned.Add(1)
	d := time.Duration(time.Now().UnixNano() - vp.startedAt.Load())
	first := b.msgs[0]
	p.rs.metrics.abandonBatch(first, len(b.msgs), d)
	const msg = "zkafka: batch handler still running after its timeout and grace period; abandoning it and moving on"
	p.rs.failures.log(p.rs.ctx, levelError, msg+"\x00"+first.Topic, msg,
		"topic", first.Topic, "partition", first.Partition, "offset", first.Offset, "batch_size", len(b.msgs), "virtual_partition", vp.idx)
	gen := vp.gen.Add(1)
	go func() {
		err := fmt.Errorf("%w (%s) and did not return within the grace period (%s)", errProcessTimeout, p.timeout, p.grace)
		errs := make([]error, len(b.msgs))
		for i := range errs {
			errs[i] = err
		}
		p.completeBatch(vp, b.msgs, errs, vp.ticket, false)
		vp.batch.CompareAndSwap(b, nil) // b is not cleared: the abandoned handler may still read it
		p.serveBatch(vp, gen)
	}()
}
