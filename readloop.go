package zkafka

// The reader loop of one Run: the one goroutine that talks to the consumer. It polls, runs the
// read hooks, routes each message by key to its virtual partition (virtual_partition.go) and
// wakes the processors (processor.go) once per batch, and every batchWake of a long one
// (catchUpWake while it catches up, wakeEvery); before a poll that will wait it lets the
// processors it woke run (yieldBeforePoll). It never blocks on a queue (G7): at the in-flight
// bound (inflight.go) it first waits briefly for room, then pauses every assigned partition
// and goes on polling, so rebalances are served and the group membership holds; an open
// circuit breaker (breaker.go) pauses the same way. Rebalance callbacks run inside its polls
// (revoke.go). At a graceful stop it keeps polling, paused, while the queues drain.
//
// Invariant: every message run reads is dispatched, counted in the in-flight bound, and queued
// on exactly one virtual partition: collected for it (dispatched) until the batch's end, a
// batchWake of it or a revoke hands it over (handOver), then in its queue (drain, at a
// graceful stop, leaves what it still polls unfinished: the next reader of the partition
// reads it again); the loop's own state (router, dispatched, paused) is touched by this
// goroutine only.
//
// zkafka v2's observable rhythm is kept: PostFanout runs after every read attempt (a message,
// an empty poll, a failed read, a wait for room or for the breaker), and a failed read (a
// Reader's error, no Reader from the ClientProvider) is logged and counts toward the breaker.
//
// Work.Run runs it; runState.stop calls drain.

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"
)

// readLoop is the state of the reader goroutine. Its fields are the reader goroutine's alone.
type readLoop struct {
	rs     *runState
	gate   *breaker   // nil: no circuit breaker
	router *keyRouter // nil: pure hash routing (HashRouting)
	// handover guards dispatched, toWake and the bound's reader side (inFlight.add): the reader
	// holds it while run runs, except inside its polls, where a revoke (revoked) takes it to
	// hand over what the batch collected so far. A revoke runs inside a poll: the reader's
	// own, or a Close's on its goroutine while the reader goes on (KReader.leave).
	handover sync.Mutex
	// dispatched holds, per virtual partition, what the current batch dispatched to it and has
	// not yet handed over to its queue (handOver); toWake lists the virtual partitions
	// dispatched to since their last wake (wakeQueued), and touched marks them, by index.
	dispatched [][]*Message
	toWake     []*virtualPartition
	touched    []bool
	rr         uint64 // round-robin counter for nil keys
	readAt     int64  // when the current batch was read (UnixNano), for Work.Status

	paused    bool          // every assigned partition is paused
	idle      bool          // the last poll came back empty
	backlog   int           // messages of the batches in a row that ended with more ready (catching up)
	woke      bool          // the last batch woke a processor (wakeQueued)
	readerErr error         // why renew got no new reader (readerMissing reports it)
	lastStore time.Time     // when finished offsets were last handed to librdkafka
	pollEvery time.Duration // poll timeout while not paused
}

// run reads until shutdown is closed, the run's context is cancelled (nil) or the consumer
// fails (its error).
func (l *readLoop) run(shutdown <-chan struct{}) error {
	rs := l.rs
	l.handover.Lock()
	defer l.handover.Unlock()
	l.idle = true
	for {
		select {
		case <-rs.ctx.Done():
			return nil
		case <-shutdown:
			return nil
		default:
		}
		if r := rs.renewal.Load(); r != nil {
			l.renew(r)
			continue
		}
		if rs.reader == nil {
			l.readerMissing(shutdown)
			continue
		}
		cbOpen := l.gate.isOpen()
		if rs.kr == nil {
			if l.readForeign(shutdown, cbOpen) {
				return nil
			}
			continue
		}
		if !l.backPressure(shutdown, cbOpen) {
			l.postFanout(nil)
			continue
		}
		if err := l.readBatch(); err != nil {
			return err
		}
	}
}

// readForeign reads one message from a Reader that is not the library's own (it cannot be
// paused: the loop waits for room instead). It returns true when the run is cancelled.
func (l *readLoop) readForeign(shutdown <-chan struct{}, cbOpen bool) bool {
	rs := l.rs
	switch {
	case cbOpen:
		l.gate.wait(foreignRoomWait, shutdown, rs.ctx.Done())
		l.postFanout(nil)
		return false
	case rs.bound.full():
		rs.bound.wait(foreignRoomWait, shutdown, rs.ctx.Done())
		l.postFanout(nil)
		return false
	}
	msg, err := rs.reader.Read(rs.ctx)
	l.readAt = time.Now().UnixNano()
	l.postReadImmediate(msg, err)
	if err != nil {
		if rs.ctx.Err() != nil {
			return true
		}
		l.readFailed(err)
		l.postFanout(nil)
		return false
	}
	if msg != nil {
		l.dispatch(msg)
		l.wakeQueued()
	}
	l.postFanout(msg)
	return false
}

// errNilReader is the failed read of a Run whose ClientProvider returned no Reader.
var errNilReader = errors.New("zkafka: the ClientProvider returned a nil Reader")

// readerMissing is a read attempt of a Run without a reader (its ClientProvider returned a nil
// Reader and no error, or failed to make a new one for renew.go): a failed read, a wait of foreignRoomWait, and another request for a
// reader, until the run stops.
func (l *readLoop) readerMissing(shutdown <-chan struct{}) {
	rs := l.rs
	l.readFailed(l.missingReaderError())
	l.postFanout(nil)
	t := time.NewTimer(foreignRoomWait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-shutdown:
		return
	case <-rs.ctx.Done():
		return
	}
	reader, err := rs.w.cp.Reader(rs.ctx, rs.w.topicConfig)
	switch {
	case err != nil:
		l.readFailed(err)
	case reader != nil:
		rs.useReader(reader)
	}
}

// readFailed logs a failed read with zkafka v2's words (users alert on them) and counts it
// toward the circuit breaker. Repeats of one failure are rate-limited (failurelog.go): the
// first is written as v2 writes it, the rest summarised under the same words.
func (l *readLoop) readFailed(err error) {
	const failed = "Kafka worker read message failed"
	l.rs.failures.log(l.rs.ctx, levelWarn, failed+"\x00"+failureKey(err), failed, "error", err, "topics", l.rs.w.topicConfig.topics())
	l.gate.fail()
}

// postFanout runs the PostFanout hook after a read attempt, with the message's context when
// it read one.
func (l *readLoop) postFanout(msg *Message) {
	h := l.rs.w.lifecycle.PostFanout
	if h == nil {
		return
	}
	ctx := l.rs.ctx
	if msg != nil && msg.ctx != nil {
		ctx = msg.ctx
	}
	l.rs.notify("PostFanout", func() { h(ctx) })
}

// backPressure pauses or resumes the partitions as the in-flight bound and the breaker
// require. It returns false when it waited for room instead (the loop then looks at the stop
// signals again before polling).
//
// Back-pressure has two steps. At the in-flight bound the reader first stops polling and waits
// up to softWait for a tenth of the bound to free up (a short hiccup: librdkafka keeps its
// prefetched messages). If it does not, it pauses every assigned partition and keeps polling
// (G7), and resumes once half the bound is free again (a pause drops the prefetch, so it is
// worth a longer stretch of reading).
func (l *readLoop) backPressure(shutdown <-chan struct{}, cbOpen bool) bool {
	rs := l.rs
	wantPause := cbOpen
	switch {
	case rs.bound.full():
		if !l.paused && !cbOpen && l.waitForRoom(shutdown) {
			return false
		}
		wantPause = true
	case l.paused && !rs.bound.halfFree():
		wantPause = true // hysteresis: resume only once half the bound is free
	}
	if wantPause != l.paused {
		rs.kr.setPaused(wantPause)
		l.paused = wantPause
	}
	return true
}

// waitForRoom waits up to softWait for a tenth of the bound to free up, as inFlight.wait, and
// every commitSurgeGap of it hands on what finished meanwhile (KReader.flush, when a commit is
// due). A full bound is a catch-up: the processors finish a tenth of it in up to softWait,
// and the commit of a burst (commitBurst) must not wait for the reader to read again (the
// commits of a drain came every 70-100 ms instead of every 25).
func (l *readLoop) waitForRoom(shutdown <-chan struct{}) bool {
	rs := l.rs
	deadline := time.Now().Add(softWait)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		if rs.bound.wait(min(left, commitSurgeGap), shutdown, rs.ctx.Done()) {
			return true
		}
		l.flush(time.Now())
	}
}

// flush hands on what finished (KReader.flush) with the Run's count of messages in flight,
// from which a commit tells how many finished since the last (offsetStore.progress).
func (l *readLoop) flush(now time.Time) { l.rs.kr.flush(now, l.rs.bound.count()) }

// readBatch stores finished offsets when due, polls once with a timeout, then takes what
// librdkafka has ready without waiting, up to batchLimit messages or the in-flight bound,
// waking the processors at its end and every wakeEvery of it. It returns the consumer's fatal
// error.
func (l *readLoop) readBatch() error {
	rs := l.rs
	if l.woke && l.idle {
		yieldBeforePoll()
	}
	l.woke = false
	if now := time.Now(); l.idle || l.paused || now.Sub(l.lastStore) >= storeEvery {
		l.flush(now)
		l.lastStore = now
	}
	timeout := l.pollEvery
	if l.paused {
		timeout = pausedPoll
	}
	msg, err := l.poll(timeout)
	var woken, handed time.Time // when the processors were last woken, and handed messages, for this batch
	if msg != nil {
		woken = time.Now()
		handed = woken
		l.readAt = woken.UnixNano() // one clock reading for the batch (Work.Status)
	}
	l.postReadImmediate(msg, err) // after every waiting poll, with or without a message
	limit := l.batchLimit()
	n := 0
	for ; ; n++ {
		if err != nil && isReadError(err) {
			// The consumer reads on (the degraded ReadMessage mode): a failed read.
			l.readFailed(err)
			l.postFanout(nil)
			msg = nil
			break
		}
		if err != nil {
			l.wakeQueued()
			rs.w.logger.Errorw(rs.ctx, "zkafka: consumer failed", "topic", rs.topic, "error", err)
			return err
		}
		if msg == nil {
			if n == 0 {
				l.postFanout(nil) // an empty read attempt
			}
			break
		}
		l.dispatch(msg)
		l.postFanout(msg)
		if n == limit || rs.bound.full() {
			break
		}
		if n%batchWakeCheck == batchWakeCheck-1 {
			// A long batch (librdkafka had many ready, or the reader lost its core) does not
			// hold back what it dispatched first for longer than wakeEvery from a parked
			// processor, nor for longer than batchWake from one that runs.
			if now := time.Now(); now.Sub(woken) >= l.wakeEvery() {
				l.wakeQueued()
				woken, handed = now, now
			} else if now.Sub(handed) >= batchWake {
				l.handOver()
				handed = now
			}
		}
		msg, err = l.poll(0)
		if msg != nil || err != nil {
			l.postReadImmediate(msg, err)
		}
	}
	// One wake per virtual partition per batch (and per wakeEvery of a long one), not per
	// message: a processor woken for each message would sleep again after each one.
	l.wakeQueued()
	l.idle = msg == nil
	if msg != nil && !rs.bound.full() {
		l.backlog = min(l.backlog+n+1, deepBacklog)
	} else {
		l.backlog = 0
	}
	return nil
}

// poll is KReader.poll with the hand-over let go of, for a revoke inside it (revoked).
func (l *readLoop) poll(timeout time.Duration) (*Message, error) {
	l.handover.Unlock()
	defer l.handover.Lock()
	return l.rs.kr.poll(timeout)
}

// batchLimit is how many messages past the first the current batch may take: drainBatch, or
// deepDrainBatch in a deep catch-up (readLoop.wakeEvery).
func (l *readLoop) batchLimit() int {
	if l.backlog >= deepBacklog {
		return deepDrainBatch
	}
	return drainBatch
}

// wakeEvery is how long the reader dispatches a batch before it wakes the processors of what
// it queued so far: batchWake, or catchUpWake while it catches up (the last batch ended at
// drainBatch with more ready). A processor with a fast handler empties its queue long before
// the next wake and parks; waking it every batchWake of a catch-up batch made it park and
// wake again for every few messages, and those hand-overs between the two cores cost the
// reader's core more than the handlers did (docs/performance.md, "fewer wakes while catching up").
// A message of a catch-up batch waited in librdkafka's queue before it was read, so waking
// its processor at the end of the batch adds at most catchUpWake to a wait already longer.
//
// A deep catch-up — deepBacklog messages read in a row with more ready each time: a backlog,
// not the burst of a producer's linger — takes batches of deepDrainBatch and wakes every
// deepCatchUpWake: a quarter of the parks again (docs/performance.md, "a deep catch-up").
func (l *readLoop) wakeEvery() time.Duration {
	switch {
	case l.backlog >= deepBacklog:
		return deepCatchUpWake
	case l.backlog > 0:
		return catchUpWake
	}
	return batchWake
}

// postReadImmediate runs the PostReadImmediate hook for one read attempt.
func (l *readLoop) postReadImmediate(msg *Message, err error) {
	if h := l.rs.w.lifecycle.PostReadImmediate; h != nil {
		l.rs.notify("PostReadImmediate", func() { h(l.rs.ctx, LifecyclePostReadImmediateMeta{Message: msg, Err: err}) })
	}
}

// drain keeps the group membership while the queues drain at a graceful stop: it pauses every
// partition and polls until exited closes or the run is cancelled.
func (l *readLoop) drain(exited <-chan struct{}) {
	rs := l.rs
	rs.kr.setPaused(true)
	for {
		select {
		case <-exited:
			return
		case <-rs.ctx.Done():
			return
		default:
		}
		if msg, _ := rs.kr.poll(pausedPoll); msg != nil {
			// Fetched before the pause took effect: not processed, so not finished.
			rs.w.logger.Debugw(rs.ctx, "zkafka: message read during shutdown left for later", "topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset)
		}
	}
}

// isReadError reports whether err is a failed read the consumer reads on from (readError). A
// function of its own, called only for an error, so that the target of errors.As does not
// escape to the heap for every message read.
func isReadError(err error) bool {
	var readErr *readError
	return errors.As(err, &readErr)
}

// Dispatch: the hand-over of each message read to a virtual partition. It runs the PostRead
// hook, picks the virtual partition — round-robin for a nil key, else the key router's choice
// (virtual_partition.go), or the pure hash with HashRouting — counts the message in the
// in-flight bound (inflight.go) and collects it for its queue; the collected messages are
// handed over to the queues every batchWake of a batch and at its end (handOver), and their
// processors (processor.go) woken once per batch and every wakeEvery of a long one
// (wakeQueued), not once per message. A key with messages in flight keeps its virtual
// partition (G2).

// dispatch runs the read hooks and hands msg to its virtual partition.
func (l *readLoop) dispatch(msg *Message) {
	rs := l.rs
	hooks := rs.w.lifecycle
	msg.ctx = rs.ctx
	msg.readAt = l.readAt
	if hooks.PostRead != nil {
		ctx, err := catchCtx(func() (context.Context, error) {
			return hooks.PostRead(rs.ctx, LifecyclePostReadMeta{Topic: msg.Topic, GroupID: rs.group, Message: msg})
		})
		if err != nil {
			logFailure(rs.ctx, rs.failures, "zkafka: PostRead hook failed", err, "topic", msg.Topic)
			if isPanic(err) {
				msg.hookErr = err
			}
		}
		if ctx != nil {
			msg.ctx = ctx
		}
	}
	if mt := rs.metrics; mt != nil {
		mt.read(msg)
	}
	idx := l.route(msg)
	msg.vp = idx
	rs.bound.add(len(msg.value))
	if l.dispatched == nil {
		l.dispatched = make([][]*Message, len(rs.vps))
		l.touched = make([]bool, len(rs.vps))
	}
	if !l.touched[idx] {
		l.touched[idx] = true
		l.toWake = append(l.toWake, rs.vps[idx])
	}
	l.dispatched[idx] = append(l.dispatched[idx], msg)
}

// route picks msg's virtual partition: round-robin for a nil key, else the key router's
// choice (or the pure hash with HashRouting).
func (l *readLoop) route(msg *Message) int {
	n := len(l.rs.vps)
	switch {
	case n == 1:
		return 0
	case msg.isKeyNil:
		l.rr++
		return int(l.rr % uint64(n))
	case l.router == nil:
		return routeKey(msg.Key, n)
	default:
		msg.route = l.router.route(msg.Key)
		return msg.route.vp
	}
}

// wakeQueued hands what dispatch collected over to the virtual partitions' queues and wakes
// their processors, after it counted the messages dispatched as consumed (metrics.go). A
// revoke calls it first, so that it finds every message in a queue.
func (l *readLoop) wakeQueued() {
	if mt := l.rs.metrics; mt != nil {
		mt.flushConsumed(l.rs.ctx)
	}
	l.handOver()
	for _, vp := range l.toWake {
		l.touched[vp.idx] = false
		signal(vp.wake)
	}
	if testHookWoke != nil && len(l.toWake) > 0 {
		testHookWoke()
	}
	l.woke = l.woke || len(l.toWake) > 0
	l.toWake = l.toWake[:0]
}

// handOver moves what dispatch collected into the virtual partitions' queues, one enqueue (one
// lock) each, waking only the processors that asked for it (virtualPartition.eager): one that
// runs takes them on its own. The bound learns of them first (inFlight.publish), before a
// processor can release one.
func (l *readLoop) handOver() {
	l.rs.bound.publish()
	for _, vp := range l.toWake {
		if ms := l.dispatched[vp.idx]; len(ms) > 0 {
			vp.enqueue(ms)
			clear(ms) // the queue holds them now
			l.dispatched[vp.idx] = ms[:0]
			if vp.eager.Load() && !testNoEagerWake {
				signal(vp.wake)
			}
		}
	}
}

// yieldBeforePoll lets the processors the reader just woke run before it polls again when
// that poll is likely to wait (librdkafka's queue was empty). A woken goroutine waits in the
// run queue of the reader's P, and a poll that waits is a cgo call that keeps its P: the
// runtime's monitor (sysmon) takes the P back for the queued goroutines only after one or two
// of its ticks, which grow to 10 ms when it has been idle. Without the yield, a message a
// processor was woken for waited there (docs/performance.md, "Tail latency"). Gosched puts the
// reader on the global run queue, which the scheduler looks at before the local one once in 61
// schedules: the second Gosched covers that case (one waiting poll in 50 began before the
// processors had run with one, none in 800 with two).
func yieldBeforePoll() {
	runtime.Gosched()
	runtime.Gosched()
}

// testNoEagerWake, when set by a test, turns the eager wake at a hand-over off, to measure
// what it does.
var testNoEagerWake bool

// testHookWoke, when set by a test, is called by the reader each time it wakes processors.
var testHookWoke func()
