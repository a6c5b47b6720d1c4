package zkafka

// The Work and the life of one Run: start builds the run's parts and stop takes them down.
// What happens in between lives next door, one part a file, in the order a message meets
// them (docs/architecture.md draws the path):
//
//   - readloop.go: the reader goroutine: poll, back-pressure, pause, v2's read rhythm;
//   - readloop.go also dispatches: read hooks, route by key, queue, wake the processors;
//   - revoke.go: what a revoke does to queued and in-flight messages;
//   - virtual_partition.go and parking.go: the queues, the key router, and messages waiting
//     for a retry with the later messages of their key;
//   - inflight.go: the bound on read-but-unfinished messages;
//   - processor.go and instrument.go: a goroutine per virtual partition runs the handler
//     (span, hooks, timeout) and completes its message, and the watchdog;
//   - breaker.go: the circuit breaker gate;
//   - errclass.go, retry.go: the class of a handler's failure and its retry;
//   - deadletter.go: writing failures to the dead letter topic;
//   - commit.go, offsets.go, rebalance.go and reader.go: which offsets are stored and
//     committed, and the partitions the consumer owns.
//   - metrics.go: the OpenTelemetry instruments recorded along the way,
//     and the gauges observed from Status;
//   - stuckwatch.go: stuck partitions logged from Status (G18);
//   - renew.go: a new consumer for one that reads nothing, or whose cluster changed.
//
// Invariant: every goroutine a Run starts has exited when Run returns, except a handler the
// watchdog abandoned (and, after an abrupt stop, handlers still returning from their
// cancelled context), whose results are discarded (G14), and the close of a consumer whose
// commit waits for a group coordinator that is away (KReader.Close, closeMaxWait), which
// Client.Close waits for (clientCloseMaxWait).

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Work reads one or more topics through a consumer group and runs a processor for every
// message, spread over virtual partitions by key. Create it with a WorkFactory; run it with Run.
//
// Guards: the configuration is immutable once WorkFactory.Create returned, except the four
// fields start fills in from the Client (inheritFromClient); those are written only by Run
// while it holds running, before the run's goroutines start, and Status does not read them.
// Status reads the rest of the Work from any goroutine.
type Work struct {
	cp          ClientProvider      // immutable after Create
	topicConfig ConsumerTopicConfig // immutable after Create
	processor   processor           // immutable after Create; called by every processor goroutine
	batcher     BatchProcessor      // immutable after CreateBatch; nil unless the Work runs batches

	// logger, tp, mp and propagator: written by start (inheritFromClient) under running, then
	// read-only for the run.
	logger     Logger
	tp         trace.TracerProvider
	mp         metric.MeterProvider // nil: no metrics (metrics.go)
	propagator propagation.TextMapPropagator
	// The rest of the configuration, to poisonAfter: immutable after Create.
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

	retry *RetryPolicy // WithRetry, defaults filled in; nil: no retries
	// batchPolicy is WithBatch's, defaults filled in; nil: not given (a batch Work takes the
	// defaults).
	batchPolicy *BatchPolicy

	poisonAfter uint32 // PoisonPillAfter; 0: off

	running   atomic.Bool  // atomic: a Run is in progress (one at a time)
	abandoned atomic.Int64 // atomic: handlers the watchdog gave up on
	// reader is a Reader that is not the library's own, kept from one Run to the next as
	// zkafka v2 does: Run asks the ClientProvider for a reader only when it has none, and
	// leaves closing such a reader to whoever made it. (A KReader is closed at the end of
	// each Run, which leaves the group; the next Run gets a new one.) Owned by the goroutine
	// of Run (start, and the reader loop's useReader), one Run at a time.
	reader   Reader
	failures failureCounters // atomic counters
	commits  commitCounters  // atomic counters

	stuckAfter time.Duration            // StuckAfter; immutable after Create
	run        atomic.Pointer[runState] // atomic: the Run in progress, for Status; nil between runs
}

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
// Cancelling ctx is the abrupt stop (G4): handlers see a cancelled context, Run waits at most
// about a second (abruptStopWait) for them, closes the consumer and returns, and nothing that
// did not finish is marked finished or dead-lettered.
//
// Either stop commits what finished and closes the consumer within closeMaxWait (5 s): while
// the group coordinator is away a commit cannot complete, and Run returns without it; the
// group reads what it left out again.
//
// A handler that runs past ProcessTimeoutMillis gets a cancelled context and its message counts
// as failed (G10). The next message of its virtual partition waits until the handler returns,
// or until a grace period of min(ProcessTimeoutMillis, maxGrace = 10 s) has passed; then the handler is
// abandoned (counted in Status.AbandonedHandlers) and its result, when it comes, is discarded.
//
// Run returns configuration errors at once and can be called again after it returned. A
// ClientProvider that returns a nil Reader without an error does not stop Run: each read
// attempt logs the failure and asks again, until shutdown or cancel, as in zkafka v2.
func (w *Work) Run(ctx context.Context, shutdown <-chan struct{}) error {
	if w == nil {
		return errConfig("Run called on a nil Work")
	}
	if w.processor == nil && w.batcher == nil {
		return errConfig("Work has no processor (pass one to WorkFactory.Create)")
	}
	if w.batchPolicy != nil {
		if w.batcher == nil {
			return errConfig("WithBatch is given to a Work with a single-message processor (make it with WorkFactory.CreateBatch)")
		}
		if err := w.batchPolicy.validate(); err != nil {
			return err
		}
	}
	if w.cp == nil {
		return errConfig("Work has no client (pass one to NewWorkFactory)")
	}
	if w.retry != nil {
		if err := w.retry.validate(); err != nil {
			return err
		}
	}
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("zkafka: Run called while the Work is already running")
	}
	defer w.running.Store(false)

	rs, err := w.start(ctx)
	if err != nil {
		return err
	}
	w.run.Store(rs)
	defer w.run.Store(nil)
	err = rs.loop.run(shutdown)
	rs.stop(err != nil)
	return err
}

// Engine tuning: every duration the engine waits for, in one place.
const (
	// drainBatch is how many messages the reader takes from librdkafka's queue without
	// waiting (Poll(0)) after one that it waited for, before it does its bookkeeping again.
	drainBatch = 256
	// batchWake is how long, at most, the reader dispatches a batch before it wakes the
	// processors of what it queued so far; it looks at the clock every batchWakeCheck
	// messages. Waking once per batch costs the least CPU, but the first message of a long
	// batch then waited for the last.
	batchWake      = 100 * time.Microsecond
	batchWakeCheck = 8
	// catchUpWake is batchWake while the reader catches up (readLoop.wakeEvery): longer than
	// a batch of drainBatch takes to dispatch, so the processors are woken once per batch.
	catchUpWake = time.Millisecond
	// deepBacklog, deepDrainBatch and deepCatchUpWake are drainBatch and catchUpWake once the
	// reader has caught up on deepBacklog messages in a row (readLoop.wakeEvery): a backlog,
	// longer than the burst a producer's linger brings at once, so the wait they add falls on
	// messages that waited longer already.
	deepBacklog     = 8 * drainBatch
	deepDrainBatch  = 4 * drainBatch
	deepCatchUpWake = 4 * time.Millisecond
	// eagerAfter is how long two handlers (or ProcessBatch calls) of a processor run, within
	// eagerFor of each other, before the reader wakes it at every hand-over until eagerFor
	// passes without one (virtualPartition.eager, handlerRan): a handler that slow gains from
	// each wake more than the wake costs. In a deep catch-up without it,
	// bulk-batch-s8's processors (2 ms a call) waited up to deepCatchUpWake with messages in
	// their queue. eagerFor keeps it through the fast messages between two slow ones. (The
	// time between two parks would not do: a fast handler's processor that found its queue
	// refilled ran 1 ms now and then in noop-s8, and then woke every hand-over for 4 ms.)
	eagerAfter = time.Millisecond
	eagerFor   = deepCatchUpWake
	// maxPollEvery is the longest poll timeout of the reader (ReadTimeoutMillis if shorter):
	// the reader looks at the stop signals, the breaker and the bound at least this often.
	maxPollEvery = 100 * time.Millisecond
	// pausedPoll is the poll timeout while every partition is paused, and during the drain
	// of a graceful stop.
	pausedPoll = 10 * time.Millisecond
	// storeEvery is how often, at most, the reader looks whether finished offsets are due to
	// be committed while messages flow (it also looks whenever a poll comes back empty or
	// the partitions are paused). For a consumer with v2's methods alone it stores them.
	storeEvery = 5 * time.Millisecond
	// commitEvery is how often a reader commits finished offsets, with the completions above
	// them in the metadata, while it reads (AutoCommitIntervalMs when set); it also commits
	// at every revoke, stop and Close. A crash redoes at most what finished in the last
	// commitEvery. One commit is one round trip to the group coordinator.
	commitEvery = time.Second
	// commitBurst and commitBurstGap commit sooner after a burst: once commitBurst messages
	// finished since the last periodic commit (offsetStore.progress), the next one is due
	// commitBurstGap after it (at most 1/commitBurstGap more commits a second). A catch-up
	// after a stall reads
	// thousands of messages in a few milliseconds; a crash right after redid all of them. In
	// the chaos harness's catch-ups members finished 10,000 messages a second, and a kill
	// redid up to 640 of them with a gap of 100 ms.
	commitBurst    = 250
	commitBurstGap = 25 * time.Millisecond
	// commitSurge and commitSurgeGap bound what a crash redoes in a fast catch-up: once
	// commitSurge messages finished since the last periodic commit, the next one is due
	// commitSurgeGap after it. Below commitSurge messages in commitBurstGap (40,000 msg/s)
	// nothing changes; above it, a commit carries about commitSurge messages. In the chaos
	// harness a member finished 1,951 messages in the 32 ms of a catch-up at 60,000 msg/s
	// before a kill, and a commit every commitBurstGap had carried none of them yet.
	commitSurge    = 1000
	commitSurgeGap = 10 * time.Millisecond
	// probeEvery is how often the periodic commit probes while the fence is up (fence.go).
	probeEvery = 100 * time.Millisecond
	// commitRetryFor bounds how long a commit at a revoke, a stop or Close is tried again
	// while it fails for a reason that passes (offsets.go retryCommit), from
	// commitRetryBackoff between tries, doubling, up to eight times that.
	commitRetryFor     = 2 * time.Second
	commitRetryBackoff = 50 * time.Millisecond
	// committedWait bounds how long an assignment waits for the committed offsets and
	// metadata of its new partitions (offsetStore.priors); past it nothing is skipped.
	committedWait = 10 * time.Second
	// softWait is how long the reader, at the in-flight bound, waits for room without polling
	// before it pauses its partitions. Waiting keeps librdkafka's prefetched messages (a pause
	// drops them); it is far below max.poll.interval.ms, and rebalance callbacks only wait
	// that long.
	softWait = 100 * time.Millisecond
	// foreignRoomWait is how long the reader of a Reader that cannot pause (not a KReader)
	// waits for room at the bound, or while the breaker is open, before it looks again.
	foreignRoomWait = 50 * time.Millisecond
	// breakerRecheck is how often a processor blocked by the breaker looks again when it has
	// no open period to sleep out (DisableBusyLoopBreaker, or a half-open breaker whose probe
	// is out).
	breakerRecheck = 10 * time.Millisecond
	// maxGrace caps the grace period a handler gets past ProcessTimeoutMillis before the
	// watchdog abandons it (the grace is min(ProcessTimeoutMillis, maxGrace)).
	maxGrace = 10 * time.Second
	// watchdogMinTick and watchdogMaxTick bound how often the watchdog looks (a quarter of
	// the grace period).
	watchdogMinTick = 5 * time.Millisecond
	watchdogMaxTick = time.Second
	// revokeMaxWait caps how long a revoke waits for in-flight messages of the revoked
	// partitions (half of MaxPollIntervalMillis if shorter); revokeCheckEvery is how often it
	// looks.
	revokeMaxWait    = 30 * time.Second
	revokeCheckEvery = 5 * time.Millisecond
	// revokeEarlyCommit is how long a revoke waits for in-flight messages before it commits
	// what is finished of its partitions once, ahead of its commit after the wait.
	revokeEarlyCommit = 200 * time.Millisecond
	// abruptStopWait is how long an abrupt stop (ctx cancelled) waits for handlers to return
	// from their cancelled context before Run returns without them.
	abruptStopWait = time.Second
	// closeMaxWait bounds how long KReader.Close, and so the end of every Run, waits for the
	// final commit and the consumer's close. Past it Close returns and the consumer closes in
	// the background: that happens when a commit waits for a group coordinator that is away
	// (librdkafka retries it until the coordinator answers, and the consumer must not be
	// destroyed under it). What it did not commit is read again (G1).
	closeMaxWait = 5 * time.Second
	// leaveMaxWait bounds how long a KReader's close polls after it unsubscribed, for the
	// revoke to run and the assignment to empty (KReader.leave); leaveQuietPoll is the poll
	// that must pass without a rebalance callback once it has.
	leaveMaxWait   = 5 * time.Second
	leaveQuietPoll = 50 * time.Millisecond
	// leaveJoinGrace is what librdkafka adds to max.poll.interval.ms for a JoinGroup's
	// timeout; leaveJoinMaxWait caps how long leave waits for a join in flight to end
	// (KReader.leaveJoinWait). With the leaveMaxWait it then gives the revoke after the join,
	// it stays below clientCloseMaxWait.
	leaveJoinGrace   = 3 * time.Second
	leaveJoinMaxWait = 20 * time.Second
	// closeRejoinWait bounds how long a graceful close polls for the member to rejoin the
	// group's new generation when its final commit was refused for the membership
	// (KReader.commitAtClose); it counts toward closeMaxWait.
	closeRejoinWait = 3 * time.Second
	// clientCloseMaxWait bounds how long Client.Close waits for a consumer close that Close
	// left to the background (closeMaxWait): no consumer outlives Client.Close unless its
	// group coordinator stays away that long (G14).
	clientCloseMaxWait = 30 * time.Second
)

// dueCheckEvery is how many queued messages a processor may run, while messages wait for a
// retry, before it looks at the clock for one that is due (it always looks when its queue is
// empty): a retry may start that many messages late, a few microseconds, and the clock is
// not read for every message (time.Now took a tenth of the CPU of make bench's retry-s8).
const dueCheckEvery = 8

// runState is what one call of Run shares between its parts: the reader loop (readloop.go,
// revoke.go), the processors (processor.go), the bound (inflight.go) and the breaker
// (breaker.go).
//
// Guards: what start sets is immutable once start returned (the goroutines it starts see it
// through their start), except reader, kr and group, which the reader goroutine (Run's own)
// may set again: a reader that arrives late (readLoop.readerMissing) or a renewed consumer
// (renew.go). Other goroutines read kr through published.
type runState struct {
	w       *Work
	ctx     context.Context   // immutable: Run's context; cancelled means abrupt stop
	reader  Reader            // owned by the reader goroutine after start (useReader, renew.go)
	kr      *KReader          // reader when it is the library's own; as reader
	dlt     *deadLetterWriter // immutable after start
	metrics *workMetrics      // immutable after start; nil: no MeterProvider
	topic   string            // immutable after start
	// group is written by start and by useReader on the reader goroutine, and only when a
	// reader arriving late has another group id than start assumed (a group prefix): before
	// any message was dispatched, so the processors (breakerChanged) read it after the write
	// through the queues' locks. A renewed consumer has the same group: no write.
	group string

	vps   []*virtualPartition // immutable after start (each has its own guards)
	bound *inFlight           // immutable after start (atomic inside)
	loop  *readLoop           // immutable after start; its state is the reader goroutine's
	proc  *processors         // immutable after start
	// endStuck stops the goroutine that logs stuck partitions (stuckwatch.go); immutable
	// after start.
	endStuck func()

	stopping chan struct{} // immutable; closed by stop when it starts
	exited   chan struct{} // immutable; closed (in stop) when every processor goroutine has exited
	failures *failureLog   // immutable; failed reads and dead letter writes, rate-limited; closed by stop

	// published is kr for Work.Status, which reads it from another goroutine (kr may arrive
	// after start, on the reader goroutine: useReader, or be replaced: renew.go). Atomic.
	published atomic.Pointer[KReader]
	// renewal is a pending request for a new consumer (renew.go); nil: none. Atomic.
	renewal atomic.Pointer[renewal]
}

// start validates, creates the reader and dead letter writer, and starts the processors.
func (w *Work) start(ctx context.Context) (*runState, error) {
	tc := w.topicConfig
	w.inheritFromClient() // before anything takes w.logger
	rs := &runState{
		w:        w,
		ctx:      ctx,
		bound:    newInFlight(w.maxInFlight, w.maxBytes),
		stopping: make(chan struct{}),
		exited:   make(chan struct{}),
		group:    tc.GroupID,
		failures: newFailureLog(w.logger),
	}
	if topics := tc.topics(); len(topics) > 0 {
		rs.topic = topics[0]
	}
	reader := w.reader
	if reader == nil {
		r, err := w.cp.Reader(ctx, tc)
		if err != nil {
			return nil, err
		}
		reader = r
	}
	if reader != nil { // nil: the reader loop asks again (readerMissing)
		rs.useReader(reader)
	}
	rs.metrics = newWorkMetrics(rs)
	if w.dlt != nil {
		dlt, err := newDeadLetterWriter(ctx, w, rs.deadLetterRun())
		if err != nil {
			rs.closeReader()
			return nil, err
		}
		rs.dlt = dlt
	}
	var gate *breaker
	if !w.cbDisabled {
		gate = newBreaker(rs.topic, w.cbAfter, w.cbFor, w.blbDisabled, rs.breakerChanged)
	}
	rs.vps = make([]*virtualPartition, int(w.speedup))
	for i := range rs.vps {
		rs.vps[i] = newVirtualPartition(i)
	}
	rs.loop = &readLoop{rs: rs, gate: gate, pollEvery: min(tc.readTimeout(), maxPollEvery)}
	if !w.hashRouting {
		rs.loop.router = newKeyRouter(rs.vps, w.maxInFlight)
	}
	if rs.kr != nil {
		rs.kr.setListener(rs.loop)
	}
	rs.metrics.observe(rs)
	rs.proc = w.newProcessors(rs, gate)
	rs.proc.start(rs.vps, rs.exited)
	rs.endStuck = watchStuck(rs)
	return rs, nil
}

// useReader makes reader the run's: a KReader is the library's own (paused, rebalanced,
// committed and closed by the run); any other Reader is kept by the Work for its next Run.
func (rs *runState) useReader(reader Reader) {
	rs.reader = reader
	kr, ok := reader.(*KReader)
	if !ok {
		rs.w.reader = reader
		return
	}
	rs.kr = kr
	rs.published.Store(kr)
	if rs.group != kr.groupID { // the same for a renewed consumer (renew.go): processors read it
		rs.group = kr.groupID
	}
	var l brokerListener // the Work's hook, not the Client's (LifecycleHooks.BrokerStateChanged)
	if h := rs.w.lifecycle.BrokerStateChanged; h != nil {
		l = brokerHook(h, rs.failures, strings.Join(rs.w.topicConfig.topics(), ","), kr.groupID, rs.w.topicConfig.ClientID)
	}
	kr.health.setListener(l)
	kr.countInto(&rs.w.commits)
	kr.poisonAfter.Store(rs.w.poisonAfter)
	rs.watchCluster(kr)
	if rs.loop != nil { // a reader that arrived after start
		kr.setListener(rs.loop)
	}
}

// closeReader closes the run's reader when it is the library's own; a Reader from elsewhere
// is its maker's to close, as in zkafka v2.
func (rs *runState) closeReader() {
	if rs.kr == nil {
		return
	}
	rs.kr.logs.onClusterChange(nil)
	if err := rs.kr.Close(); err != nil {
		rs.w.logger.Warnw(context.Background(), "zkafka: closing reader failed", "topic", rs.topic, "error", err)
	}
}

// inheritFromClient takes what the factory left unset (logger, tracer and meter providers,
// propagator) from the Client.
func (w *Work) inheritFromClient() {
	c, ok := w.cp.(*Client)
	if !ok {
		return
	}
	if isDefaultLogger(w.logger) {
		w.logger = c.logger()
	}
	if w.tp == nil {
		w.tp = c.tracerProvider()
	}
	if w.mp == nil {
		w.mp = c.meterProvider()
	}
	if w.propagator == nil {
		w.propagator = c.propagator()
	}
}

// newProcessors configures the processors of rs.
func (w *Work) newProcessors(rs *runState, gate *breaker) *processors {
	p := &processors{
		rs: rs,
		around: instrumentation{runCtx: rs.ctx, group: rs.group, failures: rs.failures, hooks: w.lifecycle,
			propagator: w.propagator},
		log:       w.logger,
		onDone:    w.onDone,
		dlt:       rs.dlt,
		retry:     w.retry,
		counts:    &w.failures,
		handler:   w.processor,
		batcher:   w.batcher,
		gate:      gate,
		abandoned: &w.abandoned,
		suspects:  newSuspicion(rs, int(w.speedup)),
		timeout:   w.topicConfig.processTimeout(),
		delay:     w.topicConfig.processDelay(),
	}
	if w.tp != nil {
		p.around.tracer = w.tp.Tracer(instrumentationName)
	}
	p.chain = p.around.tracer == nil && w.lifecycle.PreProcessing == nil && w.lifecycle.PostProcessing == nil &&
		len(w.onDone) == 0 && p.delay <= 0
	p.grace = min(p.timeout, maxGrace)
	if w.batcher != nil {
		pol := BatchPolicy{}
		if w.batchPolicy != nil {
			pol = *w.batchPolicy
		}
		p.batch = pol.withDefaults()
	}
	return p
}

// deadLetterRun is what the dead letter writer needs of the run.
func (rs *runState) deadLetterRun() deadLetterRun {
	return deadLetterRun{ctx: rs.ctx, stopping: rs.stopping, group: rs.group, logger: rs.w.logger, failures: rs.failures,
		propagator: rs.w.propagator, metrics: rs.metrics}
}

// stop ends the run: graceful unless ctx was cancelled or the consumer failed.
//
// Graceful: the queues drain while the reader keeps polling, paused, then what finished is
// committed. Abrupt: handlers get abruptStopWait to return from their cancelled context.
// Consumer failed (a fatal librdkafka error; the consumer is unusable): the processors finish
// what is queued, without polling and without a final commit, and the reader is closed.
func (rs *runState) stop(failed bool) {
	w := rs.w
	close(rs.stopping)
	for _, vp := range rs.vps {
		vp.close()
	}
	go func() {
		rs.proc.wg.Wait()
		if rs.dlt != nil {
			rs.dlt.wait() // no write starts once the processors are gone
		}
		close(rs.exited)
	}()
	graceful := rs.ctx.Err() == nil && !failed
	switch {
	case graceful && rs.kr != nil:
		rs.loop.drain(rs.exited) // keeps the group membership while the queues drain
	case graceful:
		select {
		case <-rs.exited:
		case <-rs.ctx.Done():
		}
	}
	if rs.ctx.Err() != nil {
		// Abrupt: give handlers a moment to see their cancelled context, then go.
		select {
		case <-rs.exited:
		case <-time.After(abruptStopWait):
			w.logger.Warnw(context.Background(), "zkafka: handlers still running after cancel; not waiting for them", "topic", rs.topic)
		}
	}
	<-rs.proc.watchDone
	rs.endStuck()
	if rs.kr != nil {
		rs.kr.setListener(nil)
		if graceful {
			rs.kr.offsets.commitAtClose.Store(true) // v2's way too (offsetStore.closing)
		}
	}
	rs.closeReader() // commits what finished, within closeMaxWait
	if rs.dlt != nil {
		rs.dlt.close()
	}
	rs.failures.close()
	rs.metrics.close()
}

// release lets go of a message that is finished or dropped: its key's route and its room in
// the in-flight bound.
func (rs *runState) release(m *Message) {
	if m.route != nil {
		m.route.done(rs.vps[m.vp])
	}
	rs.bound.release(len(m.value))
}

// breakerChanged logs a transition of the breaker and runs the hook.
func (rs *runState) breakerChanged(from, to CircuitBreakerState) {
	rs.w.logger.Infow(rs.ctx, "zkafka: circuit breaker changed state", "topic", rs.topic, "from", from.String(), "to", to.String())
	if h := rs.w.lifecycle.CircuitBreakerStateChanged; h != nil {
		rs.notify("CircuitBreakerStateChanged", func() {
			h(rs.ctx, LifecycleCircuitBreakerStateChanged{Topic: rs.topic, GroupID: rs.group, From: from, To: to})
		})
	}
}

// notify runs a hook that returns nothing and belongs to no message: a panic in it is
// recovered and logged.
func (rs *runState) notify(name string, f func()) {
	if err := catch("lifecycle hook", func() error { f(); return nil }); err != nil {
		logFailure(rs.ctx, rs.failures, "zkafka: "+name+" hook panicked", err, "topic", rs.topic)
	}
}
