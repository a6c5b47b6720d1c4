package zkafka

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Work reads one or more topics through a consumer group and runs a processor for every
// message, spread over virtual partitions by key. Create it with a WorkFactory; run it with Run.
type Work struct {
	cp          ClientProvider
	topicConfig ConsumerTopicConfig
	processor   processor

	logger      Logger
	tp          trace.TracerProvider
	propagator  propagation.TextMapPropagator
	lifecycle   LifecycleHooks
	speedup     uint16
	cbAfter     uint32
	cbFor       time.Duration
	cbDisabled  bool
	blbDisabled bool
	onDone      []func(ctx context.Context, msg *Message, err error)
	dlt         *ProducerTopicConfig
	maxInFlight int
	maxBytes    int64
	hashRouting bool

	running   atomic.Bool
	abandoned atomic.Int64
}

// AbandonedHandlers returns how many handlers this Work has given up waiting for: handlers
// still running a grace period after their ProcessTimeoutMillis (see Run).
func (w *Work) AbandonedHandlers() int64 { return w.abandoned.Load() }

var (
	// errProcessTimeout is the failure of a message whose handler outlived ProcessTimeoutMillis.
	errProcessTimeout = errors.New("zkafka: processing exceeded ProcessTimeoutMillis")
)

// Run reads and processes messages until shutdown is closed or ctx is cancelled.
//
// Closing shutdown is the graceful stop (G3): reading stops (partitions are paused, polling
// goes on so the group membership holds), queued and running messages are finished, finished
// offsets are stored and committed, and Run returns nil. A message held by ProcessDelayMillis
// or by an open circuit breaker is not started; it stays uncommitted and is read again later.
//
// Cancelling ctx is the abrupt stop (G4): handlers see a cancelled context, Run returns within
// about a second, and nothing that did not finish is marked finished or dead-lettered.
//
// A handler that runs past ProcessTimeoutMillis gets a cancelled context and its message counts
// as failed (G10). The next message of its virtual partition waits until the handler returns,
// or until a grace period of min(ProcessTimeoutMillis, 10 s) has passed; then the handler is
// abandoned (counted by AbandonedHandlers) and its result, when it comes, is discarded.
//
// Run returns configuration errors at once and can be called again after it returned.
func (w *Work) Run(ctx context.Context, shutdown <-chan struct{}) error {
	if w == nil {
		return errConfig("Run called on a nil Work")
	}
	if w.processor == nil {
		return errConfig("Work has no processor (pass one to WorkFactory.Create)")
	}
	if w.cp == nil {
		return errConfig("Work has no client (pass one to NewWorkFactory)")
	}
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("zkafka: Run called while the Work is already running")
	}
	defer w.running.Store(false)

	rs, err := w.start(ctx)
	if err != nil {
		return err
	}
	return rs.loop(shutdown)
}

// runState is everything one call of Run owns.
type runState struct {
	w      *Work
	ctx    context.Context // Run's context: cancelled means abrupt stop
	reader Reader
	kr     *KReader // reader when it is the library's own (pause, rebalance, commit)
	dlt    *deadLetterWriter
	topic  string
	group  string

	vps    []*virtualPartition
	router *keyRouter          // used by the reader goroutine only
	toWake []*virtualPartition // queued to in the current batch, not yet woken (reader only)
	rr     atomic.Uint64       // round-robin counter for nil keys
	wg     sync.WaitGroup
	inMsgs atomic.Int64  // messages read and not finished or dropped
	inSize atomic.Int64  // payload bytes of those
	room   chan struct{} // signalled when the reader waits for room (roomWanted) and there is
	// roomWanted is set while the reader waits on room.
	roomWanted atomic.Bool

	stopping  chan struct{} // closed when the stop starts
	stopOnce  sync.Once
	vpsDone   chan struct{} // closed when every virtual partition goroutine has exited
	watchDone chan struct{} // closed when the watchdog has exited

	processTimeout time.Duration
	grace          time.Duration
	delay          time.Duration
	tracer         trace.Tracer

	cb        *gobreaker.TwoStepCircuitBreaker
	cbOpen    atomic.Bool
	cbMu      sync.Mutex
	cbOpenAt  time.Time
	cbChanged chan struct{} // closed and replaced on every breaker transition
}

// start validates, creates the reader and dead letter writer, and starts the processors.
func (w *Work) start(ctx context.Context) (*runState, error) {
	tc := w.topicConfig
	rs := &runState{
		w:              w,
		ctx:            ctx,
		room:           make(chan struct{}, 1),
		stopping:       make(chan struct{}),
		vpsDone:        make(chan struct{}),
		watchDone:      make(chan struct{}),
		processTimeout: tc.processTimeout(),
		delay:          tc.processDelay(),
		cbChanged:      make(chan struct{}),
	}
	if topics := tc.topics(); len(topics) > 0 {
		rs.topic = topics[0]
	}
	rs.grace = min(rs.processTimeout, 10*time.Second)
	if c, ok := w.cp.(*Client); ok {
		// What the factory leaves unset comes from the client.
		if _, noop := w.logger.(NoopLogger); noop {
			w.logger = c.logger()
		}
		if w.tp == nil {
			w.tp = c.tracerProvider()
		}
		if w.propagator == nil {
			w.propagator = c.propagator()
		}
	}
	if w.tp != nil {
		rs.tracer = w.tp.Tracer(instrumentationName)
	}
	reader, err := w.cp.Reader(ctx, tc)
	if err != nil {
		return nil, err
	}
	rs.reader = reader
	if kr, ok := reader.(*KReader); ok {
		rs.kr = kr
		rs.group = kr.groupID
		kr.setListener(rs)
	} else {
		rs.group = tc.GroupID
	}
	if w.dlt != nil {
		dlt, err := newDeadLetterWriter(ctx, w, rs)
		if err != nil {
			_ = reader.Close()
			return nil, err
		}
		rs.dlt = dlt
	}
	if !w.cbDisabled {
		rs.cb = gobreaker.NewTwoStepCircuitBreaker(gobreaker.Settings{
			Name:        rs.topic,
			MaxRequests: 1,
			Timeout:     w.cbFor,
			ReadyToTrip: func(c gobreaker.Counts) bool {
				return c.ConsecutiveFailures >= w.cbAfter
			},
			OnStateChange: rs.breakerChanged,
		})
	}
	rs.vps = make([]*virtualPartition, int(w.speedup))
	for i := range rs.vps {
		vp := newVirtualPartition(i)
		rs.vps[i] = vp
		rs.wg.Add(1)
		go rs.serve(vp, vp.gen.Load())
	}
	if !w.hashRouting {
		rs.router = newKeyRouter(rs.vps, w.maxInFlight)
	}
	if rs.processTimeout > 0 {
		go rs.watchdog()
	} else {
		close(rs.watchDone)
	}
	return rs, nil
}

// Reader loop tuning.
const (
	// drainBatch is how many messages the reader takes from librdkafka's queue without
	// waiting (Poll(0)) after one that it waited for, before it does its bookkeeping again.
	drainBatch = 256
	// storeEvery is how often, at most, finished offsets are handed to librdkafka while
	// messages flow (they are also stored whenever a poll comes back empty, on revoke and on
	// stop). librdkafka commits stored offsets only every auto.commit.interval.ms anyway.
	storeEvery = 5 * time.Millisecond
	// softWait is how long the reader, at the in-flight bound, waits for room without polling
	// before it pauses its partitions. Waiting keeps librdkafka's prefetched messages (a pause
	// drops them); it is far below max.poll.interval.ms, and rebalance callbacks only wait
	// that long.
	softWait = 100 * time.Millisecond
)

// loop is the reader: it polls, routes, applies back-pressure and stops the run.
//
// Back-pressure has two steps. At the in-flight bound the reader first stops polling and waits
// up to softWait for a tenth of the bound to free up (a short hiccup: librdkafka keeps its
// prefetched messages). If it does not, it pauses every assigned partition and keeps polling
// (G7), and resumes once half the bound is free again (a pause drops the prefetch, so it is
// worth a longer stretch of reading).
func (rs *runState) loop(shutdown <-chan struct{}) error {
	w := rs.w
	var runErr error
	paused := false
	pollEvery := min(w.topicConfig.readTimeout(), 100*time.Millisecond)
	var lastStore time.Time
	idle := true
reading:
	for {
		select {
		case <-rs.ctx.Done():
			break reading
		case <-shutdown:
			break reading
		default:
		}
		cbOpen := rs.cbOpen.Load()
		if rs.cb != nil && cbOpen {
			rs.cb.State() // lets the breaker move to half-open once its open period is over
		}
		if rs.kr == nil {
			// A foreign Reader cannot be paused: wait for room instead of reading.
			if cbOpen || rs.full() {
				rs.waitRoom(shutdown, 50*time.Millisecond)
				continue
			}
			msg, err := rs.reader.Read(rs.ctx)
			rs.postReadImmediate(msg, err)
			if err != nil {
				if rs.ctx.Err() != nil {
					break reading
				}
				w.logger.Warnw(rs.ctx, "zkafka: read failed", "topic", rs.topic, "error", err)
				continue
			}
			if msg != nil {
				rs.dispatch(msg)
				rs.wakeQueued()
			}
			continue
		}
		wantPause := cbOpen
		switch {
		case rs.full():
			if !paused && !cbOpen && rs.waitRoom(shutdown, softWait) {
				continue
			}
			wantPause = true
		case paused && !rs.halfFree():
			wantPause = true // hysteresis: resume only once half the bound is free
		}
		if wantPause != paused {
			rs.kr.setPaused(wantPause)
			paused = wantPause
		}
		if now := time.Now(); idle || paused || now.Sub(lastStore) >= storeEvery {
			rs.kr.storeFinished()
			lastStore = now
		}
		timeout := pollEvery
		if paused {
			timeout = 10 * time.Millisecond
		}
		msg, err := rs.kr.poll(timeout)
		rs.postReadImmediate(msg, err) // after every waiting poll, with or without a message
		for n := 0; ; n++ {
			if err != nil {
				rs.wakeQueued()
				w.logger.Errorw(rs.ctx, "zkafka: consumer failed", "topic", rs.topic, "error", err)
				runErr = err
				break reading
			}
			if msg == nil {
				break
			}
			rs.dispatch(msg)
			if n == drainBatch || rs.full() {
				break
			}
			msg, err = rs.kr.poll(0)
			if msg != nil || err != nil {
				rs.postReadImmediate(msg, err)
			}
		}
		// One wake per virtual partition per batch, not per message: the processors start
		// once the reader is done with librdkafka's ready messages.
		rs.wakeQueued()
		idle = msg == nil
	}
	rs.stop(shutdown, runErr != nil)
	return runErr
}

// wakeQueued wakes the processors of the virtual partitions dispatch queued to.
func (rs *runState) wakeQueued() {
	for _, vp := range rs.toWake {
		vp.wakePending = false
		signal(vp.wake)
	}
	rs.toWake = rs.toWake[:0]
}

// full reports whether the unfinished messages (or their bytes) reached the bound.
func (rs *runState) full() bool {
	return rs.inMsgs.Load() >= int64(rs.w.maxInFlight) || rs.inSize.Load() >= rs.w.maxBytes
}

// halfFree reports whether at most half the bound is in use.
func (rs *runState) halfFree() bool {
	return rs.inMsgs.Load() <= int64(rs.w.maxInFlight/2) && rs.inSize.Load() <= rs.w.maxBytes/2
}

// roomFor reports whether n messages of b bytes in flight leave a tenth of the bound free:
// enough for the reader to go on without waking for every message.
func (rs *runState) roomFor(n, b int64) bool {
	m := int64(rs.w.maxInFlight)
	return n <= m-max(m/10, 1) && b <= rs.w.maxBytes-rs.w.maxBytes/10
}

// waitRoom waits, up to d, until a tenth of the in-flight bound is free. It reports whether
// there is room (or the run is stopping) rather than the wait timing out. Resuming early keeps
// the window of messages in flight wide, and with it the number of distinct keys the virtual
// partitions can work on.
func (rs *runState) waitRoom(shutdown <-chan struct{}, d time.Duration) bool {
	rs.roomWanted.Store(true)
	if rs.roomFor(rs.inMsgs.Load(), rs.inSize.Load()) {
		rs.roomWanted.Store(false)
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-rs.room:
		return true
	case <-rs.ctx.Done():
		return true
	case <-shutdown:
		return true
	case <-t.C:
		rs.roomWanted.Store(false)
		return false
	}
}

// dispatch runs the read hooks and hands msg to its virtual partition.
func (rs *runState) dispatch(msg *Message) {
	w := rs.w
	msg.ctx = rs.ctx
	if w.lifecycle.PostRead != nil {
		ctx, err := safeHook(func() (context.Context, error) {
			return w.lifecycle.PostRead(rs.ctx, LifecyclePostReadMeta{Topic: msg.Topic, GroupID: rs.group, Message: msg})
		})
		if err != nil {
			w.logger.Warnw(rs.ctx, "zkafka: PostRead hook failed", "error", err)
			if isHookPanic(err) {
				msg.hookErr = err
			}
		}
		if ctx != nil {
			msg.ctx = ctx
		}
	}
	n := len(rs.vps)
	idx := 0
	if n > 1 {
		if msg.isKeyNil {
			idx = int(rs.rr.Add(1) % uint64(n))
		} else if rs.router == nil {
			idx = routeKey(msg.Key, n) // HashRouting
		} else {
			msg.route = rs.router.route(msg.Key)
			idx = msg.route.vp
		}
	}
	msg.vp = idx
	rs.inMsgs.Add(1)
	rs.inSize.Add(int64(len(msg.value)))
	if debugRoute != nil {
		debugRoute(rs, idx)
	}
	vp := rs.vps[idx]
	vp.enqueue(msg)
	if !vp.wakePending {
		vp.wakePending = true
		rs.toWake = append(rs.toWake, vp)
	}
	if h := w.lifecycle.PostFanout; h != nil {
		rs.notify("PostFanout", func() { h(msg.ctx) })
	}
}

func (rs *runState) postReadImmediate(msg *Message, err error) {
	if h := rs.w.lifecycle.PostReadImmediate; h != nil {
		rs.notify("PostReadImmediate", func() { h(rs.ctx, LifecyclePostReadImmediateMeta{Message: msg, Err: err}) })
	}
}

// release lets go of a message that is finished or dropped, and wakes the reader when it
// waits for room and there is (see waitRoom).
func (rs *runState) release(m *Message) {
	if m.route != nil {
		m.route.done(rs.vps[m.vp])
	}
	n := rs.inMsgs.Add(-1)
	b := rs.inSize.Add(-int64(len(m.value)))
	if rs.roomWanted.Load() && rs.roomFor(n, b) && rs.roomWanted.CompareAndSwap(true, false) {
		signal(rs.room)
	}
}

// stop ends the run: graceful unless ctx was cancelled (or the consumer failed).
func (rs *runState) stop(shutdown <-chan struct{}, failed bool) {
	w := rs.w
	rs.stopOnce.Do(func() { close(rs.stopping) })
	for _, vp := range rs.vps {
		vp.close()
	}
	done := rs.vpsDone
	go func() {
		rs.wg.Wait()
		close(done)
	}()
	graceful := rs.ctx.Err() == nil && !failed
	if graceful && rs.kr != nil {
		// Keep the group membership while the queues drain: pause and go on polling.
		rs.kr.setPaused(true)
	drain:
		for {
			select {
			case <-done:
				break drain
			case <-rs.ctx.Done():
				break drain
			default:
			}
			if msg, _ := rs.kr.poll(10 * time.Millisecond); msg != nil {
				// Fetched before the pause took effect: not processed, so not finished.
				rs.w.logger.Debugw(rs.ctx, "zkafka: message read during shutdown left for later", "topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset)
			}
		}
	} else if graceful {
		select {
		case <-done:
		case <-rs.ctx.Done():
		}
	}
	if rs.ctx.Err() != nil {
		// Abrupt: give handlers a moment to see their cancelled context, then go.
		select {
		case <-done:
		case <-time.After(time.Second):
			w.logger.Warnw(context.Background(), "zkafka: handlers still running after cancel; not waiting for them", "topic", rs.topic)
		}
	}
	<-rs.watchDone
	if rs.kr != nil {
		rs.kr.setListener(nil)
		if graceful {
			if err := rs.kr.commit(); err != nil {
				w.logger.Warnw(context.Background(), "zkafka: final commit failed", "topic", rs.topic, "error", err)
			}
		}
	}
	if err := rs.reader.Close(); err != nil {
		w.logger.Warnw(context.Background(), "zkafka: closing reader failed", "topic", rs.topic, "error", err)
	}
	if rs.dlt != nil {
		rs.dlt.close()
	}
	_ = shutdown
}

// revoked is called by the KReader, inside Poll, before partitions go away (G6): queued
// messages of those partitions are dropped (the next owner reads them), and in-flight ones
// are waited for, up to a deadline, so that what finishes can still be committed.
func (rs *runState) revoked(parts []tpKey) {
	set := make(map[tpKey]struct{}, len(parts))
	for _, p := range parts {
		set[p] = struct{}{}
	}
	in := func(m *Message) bool {
		_, ok := set[tpKey{m.Topic, m.Partition}]
		return ok
	}
	for _, vp := range rs.vps {
		for _, m := range vp.removeIf(in) {
			rs.release(m)
		}
		signal(vp.kick)
	}
	deadline := time.Now().Add(rs.revokeWait())
	for time.Now().Before(deadline) {
		waiting := false
		for _, vp := range rs.vps {
			if m := vp.busy.Load(); m != nil && in(m) {
				waiting = true
				break
			}
		}
		if !waiting {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	rs.w.logger.Warnw(rs.ctx, "zkafka: revoke deadline passed with messages still in flight; they will be read again by the next owner", "topic", rs.topic)
}

// revokeWait bounds how long a revoke waits for in-flight messages: half the max poll
// interval, at most 30 s.
func (rs *runState) revokeWait() time.Duration {
	return min(rs.w.topicConfig.maxPollInterval()/2, 30*time.Second)
}

// serve is the processor goroutine of one virtual partition, for generation gen.
func (rs *runState) serve(vp *virtualPartition, gen uint64) {
	for {
		if vp.gen.Load() != gen {
			return // replaced by the watchdog; the replacement owns the WaitGroup slot
		}
		m, ok, closed := vp.pop()
		if !ok {
			if closed || rs.ctx.Err() != nil {
				rs.wg.Done()
				return
			}
			select {
			case <-vp.wake:
			case <-rs.ctx.Done():
			}
			continue
		}
		if rs.ctx.Err() != nil {
			rs.release(m) // abrupt stop: not processed, not finished
			continue
		}
		if debugPopped != nil {
			debugPopped(m)
		}
		vp.busy.Store(m)
		if m.trk != nil && m.trk.isRevoking() {
			// Popped while its partition was being revoked, before busy told revoked to wait
			// for it: the partition's next owner reads it again. (revoked sets revoking, then
			// reads busy; this sets busy, then reads revoking: one of the two sees the other.)
			vp.busy.Store(nil)
			rs.release(m)
			continue
		}
		if !rs.handle(vp, m, gen) {
			return // abandoned: the replacement goroutine finishes m
		}
		vp.busy.Store(nil)
	}
}

// handle takes one message from hold to finish. It returns false when the handler was
// abandoned by the watchdog (the caller must exit).
func (rs *runState) handle(vp *virtualPartition, m *Message, gen uint64) bool {
	if !rs.hold(vp, m) {
		rs.release(m)
		return true
	}
	var cbDone func(bool)
	if rs.cb != nil {
		var ok bool
		if cbDone, ok = rs.admit(vp, m); !ok {
			rs.release(m)
			return true
		}
	}
	vp.cbDone = cbDone
	abandoned, err := rs.process(vp, m, gen)
	if abandoned {
		return false
	}
	if rs.ctx.Err() != nil {
		// Abrupt stop while the handler ran: its outcome is not trusted (G4).
		if cbDone != nil {
			cbDone(true)
		}
		rs.release(m)
		return true
	}
	rs.complete(vp, m, err, cbDone)
	return true
}

// hold waits until the message is due (ProcessDelayMillis, G9). It returns false when the
// message must be let go of unfinished (stop, or its partition is being revoked).
func (rs *runState) hold(vp *virtualPartition, m *Message) bool {
	if rs.delay <= 0 {
		return true
	}
	wait := time.Until(m.TimeStamp.Add(rs.delay))
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-rs.stopping:
			return false
		case <-rs.ctx.Done():
			return false
		case <-vp.kick:
			if m.trk != nil && m.trk.isRevoking() {
				return false
			}
		}
	}
}

// admit waits until the circuit breaker lets a message through (G11).
func (rs *runState) admit(vp *virtualPartition, m *Message) (func(bool), bool) {
	for {
		done, err := rs.cb.Allow()
		if err == nil {
			return done, true
		}
		rs.cbMu.Lock()
		changed := rs.cbChanged
		wait := time.Until(rs.cbOpenAt.Add(rs.w.cbFor))
		rs.cbMu.Unlock()
		if rs.w.blbDisabled || wait <= 0 {
			wait = 10 * time.Millisecond
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-changed:
		case <-rs.stopping:
			t.Stop()
			return nil, false
		case <-rs.ctx.Done():
			t.Stop()
			return nil, false
		case <-vp.kick:
			if m.trk != nil && m.trk.isRevoking() {
				t.Stop()
				return nil, false
			}
		}
		t.Stop()
	}
}

func (rs *runState) breakerChanged(_ string, from, to gobreaker.State) {
	rs.cbMu.Lock()
	if to == gobreaker.StateOpen {
		rs.cbOpenAt = time.Now()
	}
	close(rs.cbChanged)
	rs.cbChanged = make(chan struct{})
	rs.cbMu.Unlock()
	rs.cbOpen.Store(to == gobreaker.StateOpen)
	rs.w.logger.Infow(rs.ctx, "zkafka: circuit breaker changed state", "topic", rs.topic, "from", from.String(), "to", to.String())
	if h := rs.w.lifecycle.CircuitBreakerStateChanged; h != nil {
		rs.notify("CircuitBreakerStateChanged", func() {
			h(rs.ctx, LifecycleCircuitBreakerStateChanged{Topic: rs.topic, GroupID: rs.group, From: breakerState(from), To: breakerState(to)})
		})
	}
}

func breakerState(s gobreaker.State) CircuitBreakerState {
	switch s {
	case gobreaker.StateOpen:
		return CircuitBreakerOpen
	case gobreaker.StateHalfOpen:
		return CircuitBreakerHalfOpen
	default:
		return CircuitBreakerClosed
	}
}

// process runs the hooks, the span and the handler. abandoned is true when the watchdog gave
// up on the handler while it ran.
func (rs *runState) process(vp *virtualPartition, m *Message, gen uint64) (abandoned bool, err error) {
	w := rs.w
	ctx := m.ctx
	if ctx == nil {
		ctx = rs.ctx
	}
	if rs.tracer != nil {
		if w.propagator != nil && len(m.Headers) > 0 {
			ctx = w.propagator.Extract(ctx, msgCarrier(m.Headers))
		}
		var span trace.Span
		ctx, span = rs.tracer.Start(ctx, m.Topic+" process", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.destination.name", m.Topic),
				attribute.String("messaging.consumer.group.name", rs.group),
				attribute.Int("messaging.destination.partition.id", int(m.Partition)),
				attribute.Int64("messaging.kafka.offset", m.Offset),
				attribute.String("messaging.kafka.message.key", m.Key),
			))
		// The dead letter and the OnDone callbacks run after the span ended; they link to it
		// through the message's context.
		base := m.ctx
		if base == nil {
			base = rs.ctx
		}
		m.ctx = trace.ContextWithSpanContext(base, span.SpanContext())
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
	}
	if h := w.lifecycle.PreProcessing; h != nil {
		next, herr := safeHook(func() (context.Context, error) {
			return h(ctx, LifecyclePreProcessingMeta{Topic: m.Topic, GroupID: rs.group, VirtualPartitionIndex: vp.idx, TopicLag: time.Since(m.TimeStamp), Message: m})
		})
		if herr != nil {
			w.logger.Warnw(ctx, "zkafka: PreProcessing hook failed", "error", herr)
			if isHookPanic(herr) && m.hookErr == nil {
				m.hookErr = herr
			}
		}
		if next != nil {
			ctx = next
		}
	}
	start := time.Now()
	var pc *procCtx
	if rs.processTimeout > 0 {
		// Like context.WithTimeout, without a timer or an allocation (see procCtx).
		pc = &m.pctx
		pc.start(ctx, start.Add(rs.processTimeout))
		ctx = pc
	}
	vp.startedAt.Store(start.UnixNano())
	vp.running.Store(m)
	if m.hookErr != nil {
		err = m.hookErr // a hook panicked: the message fails without running the processor
	} else {
		err = rs.call(ctx, m)
	}
	if !vp.running.CompareAndSwap(m, nil) {
		if pc != nil {
			pc.finish()
		}
		return true, nil // the watchdog took over this message
	}
	if pc != nil {
		if pc.timedOut(time.Now()) && rs.ctx.Err() == nil {
			if err == nil {
				err = fmt.Errorf("%w (%s)", errProcessTimeout, rs.processTimeout)
			} else {
				err = fmt.Errorf("%w (%s): %w", errProcessTimeout, rs.processTimeout, err)
			}
		}
		pc.finish()
	}
	if h := w.lifecycle.PostProcessing; h != nil {
		herr := safeErr(func() error {
			return h(ctx, LifecyclePostProcessingMeta{Topic: m.Topic, GroupID: rs.group, VirtualPartitionIndex: vp.idx, ProcessingTime: time.Since(start), Msg: m, ResponseErr: err})
		})
		if herr != nil {
			w.logger.Warnw(ctx, "zkafka: PostProcessing hook failed", "error", herr)
			if isHookPanic(herr) && err == nil {
				err = herr
			}
		}
	}
	return false, err
}

// call runs the processor, turning a panic into an error.
func (rs *runState) call(ctx context.Context, m *Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("zkafka: processor panicked: %v", r)
			rs.w.logger.Errorw(ctx, "zkafka: processor panicked", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	return rs.w.processor.Process(ctx, m)
}

// complete records the outcome of a processed message: the breaker, the dead letter, the
// commit tracker and the OnDone callbacks, in that order.
func (rs *runState) complete(vp *virtualPartition, m *Message, err error, cbDone func(bool)) {
	w := rs.w
	perr, isPE := processError(err)
	if cbDone != nil {
		cbDone(err == nil || (isPE && perr.DisableCircuitBreak))
	}
	ctx := m.ctx
	if ctx == nil {
		ctx = rs.ctx
	}
	if err != nil {
		w.logger.Warnw(ctx, "zkafka: processing failed", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "error", err)
		if rs.dlt != nil && (!isPE || !perr.DisableDLTWrite) {
			if !rs.dlt.write(ctx, vp, m, err) {
				rs.release(m) // not written: stays uncommitted and is read again later
				return
			}
		}
	}
	m.DoneWithContext(ctx)
	for _, f := range w.onDone {
		func() {
			defer func() {
				if r := recover(); r != nil {
					w.logger.Errorw(ctx, "zkafka: OnDone callback panicked", "panic", r)
				}
			}()
			f(ctx, m, err)
		}()
	}
	rs.release(m)
}

// processError finds a ProcessError in err's chain. (A function of its own so that the target
// of errors.As escapes to the heap only for failed messages.)
func processError(err error) (ProcessError, bool) {
	if err == nil {
		return ProcessError{}, false
	}
	var perr ProcessError
	ok := errors.As(err, &perr)
	return perr, ok
}

// watchdog abandons handlers that outlive their timeout by the grace period (G10).
func (rs *runState) watchdog() {
	defer close(rs.watchDone)
	tick := min(max(rs.grace/4, 5*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	limit := (rs.processTimeout + rs.grace).Nanoseconds()
	for {
		select {
		case <-t.C:
		case <-rs.vpsDone:
			return
		case <-rs.ctx.Done():
			return
		}
		now := time.Now().UnixNano()
		for _, vp := range rs.vps {
			m := vp.running.Load()
			if m == nil || now-vp.startedAt.Load() < limit {
				continue
			}
			if !vp.running.CompareAndSwap(m, nil) {
				continue
			}
			rs.w.abandoned.Add(1)
			rs.w.logger.Errorw(rs.ctx, "zkafka: handler still running after its timeout and grace period; abandoning it and moving on",
				"topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "virtual_partition", vp.idx)
			gen := vp.gen.Add(1)
			go func() {
				err := fmt.Errorf("%w (%s) and did not return within the grace period (%s)", errProcessTimeout, rs.processTimeout, rs.grace)
				rs.complete(vp, m, err, vp.cbDone)
				vp.busy.Store(nil)
				rs.serve(vp, gen)
			}()
		}
	}
}

// hookPanicError is a lifecycle hook's panic, recovered: it fails the message it ran for.
type hookPanicError struct{ value any }

func (e hookPanicError) Error() string {
	return fmt.Sprintf("zkafka: lifecycle hook panicked: %v", e.value)
}

func isHookPanic(err error) bool {
	var hp hookPanicError
	return errors.As(err, &hp)
}

// safeHook runs a context-returning hook, turning a panic into an error.
func safeHook(f func() (context.Context, error)) (ctx context.Context, err error) {
	defer func() {
		if r := recover(); r != nil {
			ctx, err = nil, hookPanicError{r}
		}
	}()
	return f()
}

// notify runs a hook that returns nothing and belongs to no message: a panic in it is
// recovered and logged.
func (rs *runState) notify(name string, f func()) {
	if err := safeErr(func() error { f(); return nil }); err != nil {
		rs.w.logger.Errorw(rs.ctx, "zkafka: "+name+" hook panicked", "topic", rs.topic, "error", err)
	}
}

// safeErr runs an error-returning hook, turning a panic into an error.
func safeErr(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = hookPanicError{r}
		}
	}()
	return f()
}

var debugRoute func(*runState, int)

// debugPopped, when set by a test, is called by a processor goroutine for every message it
// takes from its queue, before it marks the message busy.
var debugPopped func(*Message)
