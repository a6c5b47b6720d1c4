package zkafka

// KReader: the Reader over a confluent-kafka-go consumer. It subscribes, polls (or reads, in
// the degraded mode), turns records into Messages recorded with the commit tracker
// (commit.go), stores finished offsets (offsets.go) before polls and at Close, and guards the
// consumer against use after Close (G15). The partitions it owns, the rebalance callbacks and
// the pause are the rebalancer's (rebalance.go). Read, for users of a bare Reader, is poll in
// a loop; a Work's reader loop (readloop.go) calls poll itself.

import (
	"context"
	"errors"

	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/zkafka-go/zkafka/internal/commit"
	"github.com/zkafka-go/zkafka/internal/format"
)

// Reader reads messages one at a time. Works read through it; users may too.
type Reader interface {
	// Read returns the next message, or nil and no error when none arrived within the read
	// timeout. Call Done on every message returned, once it is finished.
	Read(ctx context.Context) (*Message, error)
	// Close commits what is finished and leaves the consumer group.
	Close() error
}

// Assignment is one partition currently assigned to a reader.
type Assignment struct {
	Partition int32
	Topic     string
}

// KafkaConsumer is the consumer a KReader reads through: zkafka v2's method set, which
// confluent-kafka-go's *kafka.Consumer has. WithConsumerProvider substitutes it (in tests).
//
// A KReader uses more of the consumer when the value it is given has it, found by type
// assertion: Poll (serves rebalances and errors between messages), Pause and Resume
// (back-pressure without blocking the poll loop), Assign, Unassign, IncrementalAssign,
// IncrementalUnassign and GetRebalanceProtocol (assignments made by the reader, eager and
// cooperative). *kafka.Consumer has them all. A consumer with only this interface's methods
// runs in the degraded mode of zkafka v2: the reader calls ReadMessage, librdkafka assigns
// partitions itself, and back-pressure and an open circuit breaker hold the read loop
// instead of pausing partitions (a process delay waits in the processor, and holds the loop
// only once the in-flight bound is full). What still holds there: at-least-once (G1),
// per-key order (G2), the commit of finished offsets only (G3, G4), dead letters (G5) and
// the in-flight bound (G8). What does not: G7 (a hold longer than max.poll.interval.ms makes
// the consumer leave the group, as in v2) and the revoke wait for in-flight work (G6) when
// the consumer never calls the rebalance callback.
type KafkaConsumer interface {
	SubscribeTopics(topics []string, rebalanceCb kafka.RebalanceCb) error
	ReadMessage(timeout time.Duration) (*kafka.Message, error)
	Commit() ([]kafka.TopicPartition, error)
	StoreOffsets(offsets []kafka.TopicPartition) ([]kafka.TopicPartition, error)
	Close() error
	Assignment() ([]kafka.TopicPartition, error)
	AssignmentLost() bool
}

var _ KafkaConsumer = (*kafka.Consumer)(nil)

// The parts of *kafka.Consumer beyond KafkaConsumer that a KReader uses when present.
type (
	// eventPoller reads messages, errors and rebalance callbacks with one call.
	eventPoller interface {
		Poll(timeoutMs int) kafka.Event
	}
	// partitionPauser pauses and resumes fetching.
	partitionPauser interface {
		Pause(partitions []kafka.TopicPartition) error
		Resume(partitions []kafka.TopicPartition) error
	}
	// eagerAssigner assigns and unassigns partitions in the rebalance callback.
	eagerAssigner interface {
		Assign(partitions []kafka.TopicPartition) error
		Unassign() error
		GetRebalanceProtocol() string
	}
	// incrementalAssigner does the same for the cooperative protocol.
	incrementalAssigner interface {
		IncrementalAssign(partitions []kafka.TopicPartition) error
		IncrementalUnassign(partitions []kafka.TopicPartition) error
	}
)

var (
	_ eventPoller         = (*kafka.Consumer)(nil)
	_ partitionPauser     = (*kafka.Consumer)(nil)
	_ eagerAssigner       = (*kafka.Consumer)(nil)
	_ incrementalAssigner = (*kafka.Consumer)(nil)
)

// ReaderSettings are what ReaderOptions set on a reader created by Client.Reader.
type ReaderSettings struct {
	// formatter replaces the configured formatter when set (RFormatterOption).
	formatter format.Formatter
}

// ReaderOption customises a KReader created by Client.Reader.
type ReaderOption func(*ReaderSettings)

// RFormatterOption sets the Formatter a reader decodes with; use it with FormatterType
// CustomFmt (it takes precedence over the configured formatter). Default: none.
func RFormatterOption(f Formatter) ReaderOption {
	return func(s *ReaderSettings) {
		if f != nil {
			s.formatter = format.Wrap(f)
		}
	}
}

// readerSettings applies opts to fresh ReaderSettings.
func readerSettings(opts []ReaderOption) ReaderSettings {
	var s ReaderSettings
	for _, o := range opts {
		if o != nil {
			o(&s)
		}
	}
	return s
}

// readerArgs is what Client hands to newReader.
type readerArgs struct {
	conf        Config
	tc          ConsumerTopicConfig
	groupPrefix string
	fmt         format.Formatter
	logger      Logger
	hooks       LifecycleHooks
	provider    func(map[string]any) (KafkaConsumer, error)
	opts        []ReaderOption
}

// KReader is the Reader over a confluent-kafka-go consumer. Offsets are stored only up to the
// first message not yet Done, so Done may be called in any order and from any goroutine.
// Read itself must be called from one goroutine at a time. The consumer subscribes on the
// first Read, as in zkafka v2.
//
// Close may be called at any time from any goroutine, also during Read: every call into the
// consumer from outside a rebalance callback runs inside handle (useguard.go), Close refuses
// later calls and closes the consumer once the calls in progress have ended (a poll within
// 100 ms, or the read timeout in the degraded mode), so nothing calls into the consumer after
// it was closed (G15).
//
// Guards: the reader goroutine (poll), Work.Status (withConsumer, brokerHealth), the
// processors (commits of poison.go through offsets), the flush goroutine, Close and
// Client.Close use a KReader at once. Everything newReader sets is immutable after it; the
// parts it points to have their own guards; the calls into the consumer are guarded by handle.
type KReader struct {
	consumer    KafkaConsumer       // immutable; calls into it are guarded by handle
	poller      eventPoller         // immutable; nil: the degraded ReadMessage mode
	tc          ConsumerTopicConfig // immutable
	groupID     string              // immutable
	fmt         format.Formatter    // immutable
	logger      Logger              // immutable
	hooks       LifecycleHooks      // immutable
	readTimeout time.Duration       // immutable

	tracker  *commit.Tracker // immutable; safe for concurrent use
	offsets  *offsetStore    // immutable; hands finished offsets to librdkafka (offsets.go)
	owned    *rebalancer     // immutable; the partitions it owns and their pause (rebalance.go)
	failures *failureLog     // immutable; the consumer's repeating errors and log lines, rate-limited
	logs     *clientLogs     // immutable; librdkafka's log lines into the Logger (clientlogs.go)
	health   *brokerWatch    // immutable; reachable brokers or not (brokerhealth.go)
	brokers  *brokerReport   // immutable; its error events about them (brokerhealth.go)
	// poisonAfter is the Work's PoisonPillAfter (poison.go); 0 (a bare reader): off. Atomic.
	poisonAfter atomic.Uint32
	flushing    atomic.Bool // atomic: a periodic commit is running (flush)
	// lastRead is the commit tracker's Partition of the last message read (Tracker.GetAgain).
	lastRead atomic.Pointer[commit.Partition]
	fatal    atomic.Bool // atomic: the consumer reported a fatal error: it is unusable

	handle useGuard // see above; its own mu
	// gone is closed once the consumer is closed (Close, in the background past
	// closeMaxWait); nil until Close began. Atomic.
	gone    atomic.Pointer[<-chan struct{}]
	closing atomic.Int32 // atomic: the closeStage closeConsumer is in
	// callbacksInClose counts the rebalance callbacks consumer.Close's own polls ran, which
	// leave exists to prevent (see stillMember). Atomic.
	callbacksInClose atomic.Int32
	subscribed       bool        // guarded by subMu
	subErr           error       // guarded by subMu
	subMu            sync.Mutex  // serialises subscribe
	subOK            atomic.Bool // atomic: subscribed without error (every poll's fast path)
}

// newReader creates the consumer and subscribes it to the configured topics.
func newReader(args readerArgs) (*KReader, error) {
	tc := args.tc
	r := &KReader{
		tc:          tc,
		groupID:     args.groupPrefix + tc.GroupID,
		fmt:         args.fmt,
		logger:      args.logger,
		hooks:       args.hooks,
		readTimeout: tc.readTimeout(),
		tracker:     commit.NewTracker(),
	}
	if r.logger == nil {
		r.logger = stderrLogger
	}
	r.failures = newFailureLog(r.logger)
	if s := readerSettings(args.opts); s.formatter != nil {
		r.fmt = s.formatter
	}
	if r.fmt == nil {
		return nil, errConfig("formatter custom needs RFormatterOption (ConsumerTopicConfig.Formatter is %q)", tc.Formatter)
	}
	cfg := makeConsumerConfig(args.conf, tc, args.groupPrefix)
	provider := args.provider
	if provider == nil {
		provider = defaultConsumerProvider
	}
	r.logs = routeLogs(cfg, tc.AdditionalProps, r.logger, r.failures)
	consumer, err := provider(configMapToAny(cfg))
	if err == nil && consumer == nil {
		err = errors.New("the consumer provider returned no consumer")
	}
	if err != nil {
		r.logs.close()
		return nil, creationError("consumer "+tc.ClientID, err, tc.AdditionalProps)
	}
	r.health = newBrokerWatch(func(_ bool, reason string, since time.Time) {
		r.brokers.flush() // the outage's summary before the line that ends it
		r.logger.Infow(context.Background(), "zkafka: consumer reaches the brokers again", "group", r.groupID,
			"topics", r.tc.topics(), "down_since", since.Format(time.RFC3339), "was", reason)
	})
	if h := args.hooks.BrokerStateChanged; h != nil {
		r.health.setListener(brokerHook(h, r.failures, strings.Join(tc.topics(), ","), r.groupID, tc.ClientID))
	}
	r.brokers = &brokerReport{watch: r.health, failures: r.failures, msg: "zkafka: consumer cannot use the brokers; it keeps trying", warn: "zkafka: consumer error",
		kv: []any{"group", r.groupID, "topics", tc.topics()}, probe: func(code kafka.ErrorCode) func() bool { return brokerProbe(r, code) }}
	r.consumer = consumer
	r.poller, _ = consumer.(eventPoller)
	r.offsets = newOffsetStore(consumer, r.tracker, r.logger, r.failures, r.groupID, tc.commitInterval(), membershipDoubtAfter(tc))
	r.offsets.left = r.notMember
	r.owned = newRebalancer(consumer, r.offsets, r.logger, r.groupID)
	return r, nil
}

// errReaderClosed is returned by a KReader's methods after Close.
var errReaderClosed = errors.New("zkafka: reader is closed")

// readError is a consumer error a read reports without the consumer being broken: the reader
// goes on reading, and a Work counts it toward its circuit breaker, as zkafka v2 does. Only
// the degraded ReadMessage mode returns it; with Poll such errors are librdkafka's own
// business (it retries) and are only logged.
type readError struct{ err error }

func (e *readError) Error() string { return "zkafka: reading failed: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// subscribe subscribes the consumer once; the caller is inside handle. A failed
// subscription fails every later read.
func (r *KReader) subscribe() error {
	if r.subOK.Load() {
		return nil
	}
	r.subMu.Lock()
	defer r.subMu.Unlock()
	if !r.subscribed {
		r.subscribed = true
		if err := r.consumer.SubscribeTopics(r.tc.topics(), r.rebalanced); err != nil {
			r.subErr = wrapErr(err, "subscribing consumer %s to %v", r.tc.ClientID, r.tc.topics())
		}
		r.subOK.Store(r.subErr == nil)
	}
	return r.subErr
}

// Read returns the next message, or nil and no error when none arrived within the read
// timeout (see Reader). Finished offsets are stored before each poll.
func (r *KReader) Read(ctx context.Context) (*Message, error) {
	if r.isClosed() {
		return nil, errReaderClosed
	}
	r.flush(time.Now(), 0)
	deadline := time.Now().Add(r.readTimeout)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		msg, err := r.poll(min(left, 100*time.Millisecond))
		if msg != nil || err != nil {
			return msg, err
		}
	}
}

// poll serves one consumer poll: rebalance callbacks run inside it. It returns a message, a
// fatal error, or nothing.
func (r *KReader) poll(timeout time.Duration) (*Message, error) {
	if !r.handle.enter() {
		return nil, errReaderClosed
	}
	defer r.handle.leave()
	if err := r.subscribe(); err != nil {
		return nil, err
	}
	if r.poller == nil {
		return r.readMessage(timeout)
	}
	ms := int(timeout / time.Millisecond)
	for range maxSkipsPerPoll {
		m, skipped, err := r.event(r.poller.Poll(ms))
		if !skipped {
			return m, err
		}
		ms = 0 // a skipped message: take the next one ready, without waiting
	}
	return nil, nil
}

// maxSkipsPerPoll bounds the messages one poll skips (KReader.newMessage) before it returns.
const maxSkipsPerPoll = 1024

// event turns what Poll returned into a message, a fatal error, or nothing; skipped reports a
// message that was finished before (offsetStore.readOutcome).
func (r *KReader) event(ev kafka.Event) (m *Message, skipped bool, err error) {
	switch e := ev.(type) {
	case nil:
		r.brokers.settle(false)
	case *kafka.Message:
		if e.TopicPartition.Error != nil {
			r.logger.Warnw(context.Background(), "zkafka: consumer reported a partition error",
				"topic", topicName(e.TopicPartition), "partition", e.TopicPartition.Partition, "error", e.TopicPartition.Error)
			return nil, false, nil
		}
		r.brokers.alive()
		m = r.newMessage(e)
		return m, m == nil, nil
	case kafka.Error:
		err = r.brokers.consumerError(e)
		if err != nil {
			r.fatal.Store(true)
		}
		return nil, false, err
	case kafka.OffsetsCommitted:
		switch {
		case e.Error == nil:
			r.offsets.committed(e.Offsets)
			if len(e.Offsets) > 0 {
				r.offsets.fence.answer("a commit")
			}
		case doubtfulCommitError(e.Error):
			r.offsets.fence.raise(e.Error) // librdkafka's own commits (v2's way)
		}
	}
	return nil, false, nil
}

// metadataGetter asks the brokers for metadata; *kafka.Consumer has it.
type metadataGetter interface {
	GetMetadata(topic *string, allTopics bool, timeoutMs int) (*kafka.Metadata, error)
}

var _ metadataGetter = (*kafka.Consumer)(nil)

// brokerProbe returns how a consumer cut off by a failure of code finds its way back: a
// metadata request that a broker answers, unless the reader is closed. It returns nil (wait
// for a message or a rebalance) when the consumer cannot ask, and for a refused authorisation,
// which metadata would not show.
func brokerProbe(r *KReader, code kafka.ErrorCode) func() bool {
	mg, ok := r.consumer.(metadataGetter)
	switch {
	case !ok, code == kafka.ErrTopicAuthorizationFailed, code == kafka.ErrGroupAuthorizationFailed,
		code == kafka.ErrClusterAuthorizationFailed:
		return nil
	}
	return func() bool {
		if !r.handle.enter() {
			return false
		}
		defer r.handle.leave()
		md, err := mg.GetMetadata(nil, false, int(brokerProbeTimeout.Milliseconds()))
		return err == nil && md != nil && len(md.Brokers) > 0
	}
}

// missingTopics asks the brokers for each topic's metadata and returns the brokers' error
// for each that does not exist; nothing when the consumer cannot ask or no broker answers.
func (r *KReader) missingTopics(topics []string) []error {
	mg, ok := r.consumer.(metadataGetter)
	if !ok || !r.handle.enter() {
		return nil
	}
	defer r.handle.leave()
	var out []error
	for _, topic := range topics {
		md, err := mg.GetMetadata(&topic, false, int(brokerProbeTimeout.Milliseconds()))
		if err != nil || md == nil {
			return out
		}
		if tm, ok := md.Topics[topic]; ok && topicFailure(tm.Error) {
			out = append(out, wrapErr(tm.Error, "topic %s", topic))
		}
	}
	return out
}

// rebalanced is the consumer's rebalance callback: a sign of life, then the rebalancer's.
func (r *KReader) rebalanced(c *kafka.Consumer, ev kafka.Event) error {
	r.brokers.alive()
	if r.closeStage() == closeInLibrdkafka {
		r.callbacksInClose.Add(1)
	}
	return r.owned.rebalance(c, ev)
}

// brokerHealth reports whether the consumer reaches its brokers and they accept it; if not,
// why (the broker's or librdkafka's words), and since when the state holds.
func (r *KReader) brokerHealth() (reachable bool, reason string, since time.Time) {
	return r.health.get()
}

// readMessage is poll in the degraded mode: a consumer from WithConsumerProvider that has only
// zkafka v2's KafkaConsumer methods (no Poll, no Pause) is read with ReadMessage, the way v2
// reads. Such a consumer cannot pause its partitions, so while the reader is paused
// (back-pressure, the breaker) the read waits for the resume, up to timeout, instead of
// reading. The caller is inside handle.
//
// Invariant: a paused reader reads nothing; a fatal error ends the Run; errors about the
// brokers or a topic are reported (brokerhealth.go) and returned as read errors, which count
// toward the breaker as in v2; anything else retriable is read on from.
func (r *KReader) readMessage(timeout time.Duration) (*Message, error) {
	if paused, resumed := r.owned.pauseState(); paused {
		if timeout > 0 {
			t := time.NewTimer(timeout)
			defer t.Stop()
			select {
			case <-resumed:
			case <-t.C:
			}
		}
		return nil, nil
	}
	km, err := r.consumer.ReadMessage(timeout)
	if err != nil {
		var kerr kafka.Error
		switch {
		case errors.As(err, &kerr) && kerr.IsFatal():
			r.fatal.Store(true) // closing it commits nothing and does not leave: it cannot
			return nil, wrapErr(err, "fatal consumer error")
		case brokerFailure(err) || brokerCause(err) || topicFailure(err):
			_ = r.brokers.consumerError(err)
			return nil, &readError{err: err}
		case errors.As(err, &kerr) && kerr.Code() == kafka.ErrTimedOut:
			r.brokers.settle(false)
			return nil, nil
		case errors.As(err, &kerr) && kerr.IsRetriable():
			r.logger.Debugw(context.Background(), "zkafka: retriable consumer error", "group", r.groupID, "error", err)
			return nil, nil
		case km != nil:
			// A partition error comes with its message: log it, read on.
			r.logger.Warnw(context.Background(), "zkafka: consumer reported a partition error", "group", r.groupID, "error", err)
			return nil, nil
		}
		return nil, &readError{err: err}
	}
	if km == nil {
		return nil, nil
	}
	r.brokers.alive()
	return r.newMessage(km), nil
}

// newMessage wraps a confluent message and records it with the commit tracker. It returns nil
// for a message not to be run: finished before, or read before (offsetStore.readOutcome).
func (r *KReader) newMessage(km *kafka.Message) *Message {
	topic := topicName(km.TopicPartition)
	last := r.lastRead.Load()
	trk := r.tracker.GetAgain(last, topic, km.TopicPartition.Partition)
	if trk != last {
		r.lastRead.Store(trk)
	}
	if r.tracker.Pending() {
		settleLate(r.offsets, trk)
	}
	r.offsets.reads.Add(1)
	offset := int64(km.TopicPartition.Offset)
	seq, out := trk.Read(offset, recordOf(km))
	if !out.Plain() && r.offsets.readOutcome(trk, out, offset) {
		return nil
	}
	m := &Message{
		Key:       keyString(km.Key),
		Headers:   headerMap(km.Headers),
		Offset:    offset,
		Partition: km.TopicPartition.Partition,
		Topic:     topic,
		GroupID:   r.groupID,
		TimeStamp: km.Timestamp,
		isKeyNil:  km.Key == nil,
		value:     km.Value,
		fmt:       r.fmt,
		trk:       trk,
		seq:       seq,
	}
	if a := out.Action(); a == commit.Hold || a == commit.AwaitRecord {
		suspectMessage(m, out, r.poisonAfter.Load())
	}
	return m
}

// keyString is key as a string without a copy: confluent-kafka-go copies each record's key
// out of librdkafka into a slice of its own, which nothing else holds or changes once the
// Message is made (one allocation and copy a message fewer; noop-s8's profile had 2.5 % of
// the process in that copy).
func keyString(key []byte) string {
	return unsafe.String(unsafe.SliceData(key), len(key))
}

// topicName is tp's topic, "" when it has none.
func topicName(tp kafka.TopicPartition) string {
	if tp.Topic == nil {
		return ""
	}
	return *tp.Topic
}

// flush hands finished offsets on (offsetStore.flush) without making the reader wait for the
// broker (G7): a commit with metadata, when one is due, runs on a goroutine of its own, one at
// a time, inside the handle (Close waits for it, for at most closeMaxWait); a store for
// librdkafka to commit runs here. A commit on the reader goroutine held the poll past max.poll.interval.ms while the
// group coordinator moved, and the group gave the partitions away (make test's cooperative
// chaos run). inFlight is the Run's count of messages in flight (offsetStore.progress), 0
// outside a Run.
func (r *KReader) flush(now time.Time, inFlight int64) {
	storeOnly := r.offsets.committer == nil
	if !storeOnly && (!r.offsets.due(now, inFlight) || !r.flushing.CompareAndSwap(false, true)) {
		return
	}
	at := r.offsets.mark(inFlight)
	run := func() {
		if r.handle.enter() {
			defer r.handle.leave()
			r.offsets.flush(now, at)
		}
	}
	if storeOnly {
		run()
		return
	}
	go func() {
		defer r.flushing.Store(false)
		run()
	}()
}

// commit commits what is finished, synchronously.
func (r *KReader) commit() error {
	if !r.handle.enter() {
		return errReaderClosed
	}
	defer r.handle.leave()
	return r.offsets.commit(nil)
}

// whileOpen runs f, unless the reader is closed (false), inside the handle: Close waits.
func (r *KReader) whileOpen(f func() bool) bool {
	if !r.handle.enter() {
		return false
	}
	defer r.handle.leave()
	return f()
}

// countInto makes the reader count its commits into c (a Work's counters).
func (r *KReader) countInto(c *commitCounters) { r.offsets.counts.Store(c) }

// testHookSetPaused, when set by a test, is called with every setPaused.
var testHookSetPaused func(paused bool)

// setPaused pauses or resumes every assigned partition (rebalancer.setPaused), unless the
// reader is closed.
func (r *KReader) setPaused(paused bool) {
	if testHookSetPaused != nil {
		testHookSetPaused(paused)
	}
	if r.handle.enter() {
		defer r.handle.leave()
		r.owned.setPaused(paused)
	}
}

// setListener sets who is told about revoked partitions (nil: nobody).
func (r *KReader) setListener(l rebalanceListener) { r.owned.setListener(l) }

// Close stores and commits what is finished, leaves the group and closes the consumer.
// Messages not finished are not committed: the group reads them again. Safe to call twice
// and from any goroutine, also while another is in Read: calls that start after Close return
// an error, and the consumer is closed once the calls in progress have ended (a poll within
// 100 ms).
//
// Close returns within closeMaxWait. A commit in progress (or the final one) that waits for a
// group coordinator that is away holds the close until the coordinator answers: librdkafka
// retries it until then, and the consumer must not be destroyed under it. Close then logs
// that and returns nil, and the consumer closes in the background when the commit ends; what
// that commit leaves out is read again by the group (G1).
func (r *KReader) Close() error {
	idle, first := r.handle.close()
	if !first {
		return nil
	}
	r.owned.endPause()
	r.health.stopProbe()
	var err error
	r.closing.Store(int32(closeAwaitingCalls))
	gone, inTime := afterIdle(idle, closeMaxWait, func() { err = r.closeConsumer() })
	r.gone.Store(&gone)
	if inTime {
		return err
	}
	stage := r.closeStage()
	r.logger.Warnw(context.Background(), "zkafka: closing the consumer takes long: "+stage.wait()+"; going on, the consumer closes in the background",
		"group", r.groupID, "client_id", r.tc.ClientID, "stage", stage.String(), "waited", closeMaxWait.String(),
		"rebalance_callbacks_in_close", r.callbacksInClose.Load())
	if testHookClosingLate != nil {
		testHookClosingLate(gone)
	}
	return nil
}

// awaitClosed waits at most d for the close Close began to end (true); true at once when
// Close was not called. Client.Close waits for its KReaders' (G14).
func (r *KReader) awaitClosed(d time.Duration) bool {
	gone := r.gone.Load()
	if gone == nil {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-*gone:
		return true
	case <-t.C:
		return false
	}
}

// closeEnded reports whether the close Close began has ended (false before Close).
func (r *KReader) closeEnded() bool {
	gone := r.gone.Load()
	if gone == nil {
		return false
	}
	select {
	case <-*gone:
		return true
	default:
		return false
	}
}

// closeStage is the step of closeConsumer a close is in, so that a close that takes long says
// what it waits for.
type closeStage int32

const (
	closeAwaitingCalls closeStage = iota + 1 // the calls into the consumer in progress to end
	closeCommitting                          // commitAtClose
	closeLeaving                             // leave
	closeInLibrdkafka                        // consumer.Close
)

// closeStage is the step the close Close began is in; 0 before.
func (r *KReader) closeStage() closeStage { return closeStage(r.closing.Load()) }

// closeStageTexts are, per stage, its name for a log line's stage field and what a close in
// it waits for.
var closeStageTexts = [...]struct{ name, wait string }{
	0: {"not started", "it has not started"},
	closeAwaitingCalls: {"commit in progress",
		// Polls return within 100 ms: the call that lasts is a periodic commit (flush).
		"a commit in progress waits for a group coordinator that has not answered"},
	closeCommitting: {"final commit", "its final commit waits for a group coordinator that has not answered"},
	closeLeaving:    {"leaving the group", "leaving the group waits for its partitions to be revoked or for a join in flight to end"},
	// librdkafka#4884: an assign call from a rebalance callback that Close's own poll ran can
	// wait for ever once the group handler has terminated.
	closeInLibrdkafka: {"librdkafka close", "librdkafka's consumer close has not returned (a rebalance callback it ran may be blocked inside librdkafka)"},
}

// String names the stage for a log line's stage field.
func (s closeStage) String() string { return closeStageTexts[s].name }

// wait says what a close in the stage waits for.
func (s closeStage) wait() string { return closeStageTexts[s].wait }

// testHookClosingLate, when set by a test, is called when Close returns before the consumer
// is closed, with a channel closed once it is.
var testHookClosingLate func(gone <-chan struct{})

// closeConsumer commits what is finished, closes the consumer (it leaves the group) and stops
// what reads from it. It runs once no call into the consumer is in progress and none can
// start. Its error, when Close no longer waits, can only be about a consumer closed before
// and is not reported.
func (r *KReader) closeConsumer() error {
	r.closing.Store(int32(closeCommitting))
	r.commitAtClose()
	r.closing.Store(int32(closeLeaving))
	r.leave()
	r.closing.Store(int32(closeInLibrdkafka))
	err := r.consumer.Close()
	r.logs.close()
	r.failures.close()
	if err != nil {
		return wrapErr(err, "closing consumer %s", r.tc.ClientID)
	}
	return nil
}

// commitAtClose commits what is finished before the consumer leaves the group. After a
// graceful stop, a commit refused for the membership (the group rebalanced and the member
// has not joined its new generation yet: ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS) is tried
// again while polls serve the rejoin, for up to closeRejoinWait: leaving at once would hand
// the next owner everything finished since the last commit that landed, to run again (G16).
// Messages polled meanwhile are dropped unrecorded, as in leave. A consumer that failed for
// good commits nothing: librdkafka refuses it every call.
func (r *KReader) commitAtClose() {
	if r.fatal.Load() {
		return
	}
	err := r.offsets.closing()
	graceful := r.offsets.commitAtClose.Load()
	for deadline := time.Now().Add(closeRejoinWait); graceful && doubtfulCommitError(err) && r.poller != nil &&
		!r.fatal.Load() && time.Now().Before(deadline); {
		r.pollClosing(int(leaveQuietPoll / time.Millisecond))
		err = r.offsets.closing()
	}
	if err != nil {
		r.logger.Warnw(context.Background(), "zkafka: committing on close failed", "group", r.groupID, "error", err)
	}
}

// pollClosing polls once while the reader closes: rebalance callbacks run, a message is
// dropped unrecorded (the next owner reads it), an error is logged. It reports false after
// a fatal error.
func (r *KReader) pollClosing(ms int) bool {
	switch e := r.poller.Poll(ms).(type) {
	case kafka.Error:
		if e.IsFatal() {
			r.fatal.Store(true)
			return false
		}
		r.failures.warnf(context.Background(), "zkafka: consumer error while leaving the group", e, "group", r.groupID)
	case kafka.OffsetsCommitted:
		if e.Error == nil {
			r.offsets.committed(e.Offsets)
		}
	}
	return true
}

// unsubscriber drops the consumer's subscription; *kafka.Consumer has it.
type unsubscriber interface{ Unsubscribe() error }

var _ unsubscriber = (*kafka.Consumer)(nil)

// leave takes the consumer out of its group before it is closed (G15): it unsubscribes and
// polls, so that the revoke callback runs here (the rebalancer commits what finished and
// unassigns), until the consumer owns no partition, has left the group (stillMember: a join
// in flight when it unsubscribed is served first) and a poll of leaveQuietPoll ran no
// rebalance callback, or leaveMaxWait passed (leaveJoinWait while it waits only for the
// join). consumer.Close then has no assignment to revoke: closing with an assignment change
// in progress can abort the process inside librdkafka (rd_kafka_cgrp_terminated asserts; its
// issue #4792), and a rebalance callback run by Close's own polls is where that change starts
// (and where its call into librdkafka can block for ever, librdkafka#4884). Messages polled meanwhile are dropped
// unrecorded (the next owner reads them). It runs inside closeConsumer, so no other call into
// the consumer is in progress and none starts; without Poll or Unsubscribe (the degraded
// mode, a consumer of the user's), before the first subscription or after a fatal error (the
// consumer is unusable) it does nothing.
//
// Rejected: Close alone. confluent-kafka-go's Close asks librdkafka to close the group
// (rd_kafka_consumer_close_queue) and polls until it has, so the revoke callback — and its
// commit, retried for up to commitRetryFor — runs inside the close, while librdkafka is
// already terminating the group.
func (r *KReader) leave() {
	u, ok := r.consumer.(unsubscriber)
	r.subMu.Lock()
	subscribed := r.subscribed && r.subErr == nil
	r.subMu.Unlock()
	if !ok || r.poller == nil || !subscribed || r.fatal.Load() {
		return
	}
	r.owned.leaving.Store(true)
	ctx := context.Background()
	if err := u.Unsubscribe(); err != nil {
		r.logger.Warnw(ctx, "zkafka: unsubscribing before the close failed", "group", r.groupID, "error", err)
		return
	}
	ms := int(leaveQuietPoll / time.Millisecond)
	start := time.Now()
	deadline, sawJoin := start.Add(leaveMaxWait), false
	for {
		before := r.owned.callbacks.Load()
		if !r.pollClosing(ms) {
			return
		}
		called := r.owned.callbacks.Load() != before
		quiet := !called && r.owned.unassigned()
		if testHookLeavePolled != nil {
			testHookLeavePolled(r, quiet)
		}
		joining := quiet && r.stillMember()
		if quiet && !joining {
			return
		}
		now := time.Now()
		switch {
		case joining:
			sawJoin = true
			deadline = later(deadline, start.Add(r.leaveJoinWait()))
		case called && sawJoin: // the join ended: the revoke that the unsubscribe makes is next
			deadline = later(deadline, now.Add(leaveMaxWait))
		}
		if now.After(deadline) {
			// Close has logged that it takes long, at closeMaxWait.
			r.logger.Infow(ctx, "zkafka: the consumer has not left its group; closing it anyway",
				"group", r.groupID, "waited", now.Sub(start).Round(time.Millisecond).String(), "joining", joining)
			return
		}
	}
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// leaveJoinWait is how long leave waits for a join that was in flight when it unsubscribed:
// as long as librdkafka's JoinGroup may take (max.poll.interval.ms, the group's rebalance
// timeout, and leaveJoinGrace), at most leaveJoinMaxWait.
func (r *KReader) leaveJoinWait() time.Duration {
	return min(r.tc.maxPollInterval()+leaveJoinGrace, leaveJoinMaxWait)
}

// stillMember reports whether librdkafka still counts the consumer a member of its group
// under the classic protocol, where it keeps the member id until the unsubscribe has taken
// effect and the member has left. An unsubscribe made while a join is in flight waits for
// that join (librdkafka postpones it until the rebalance completes); the join's assignment,
// and the revoke the unsubscribe then makes, come to rebalance callbacks, which leave must
// serve: run by consumer.Close's own poll, their call into librdkafka can wait for ever
// (librdkafka#4884). False under the consumer protocol, whose member id outlives the
// membership, and when the consumer cannot say.
func (r *KReader) stillMember() bool {
	id, _, known := classicMembership(r.consumer, r.tc)
	return known && id != ""
}

// notMember reports that librdkafka holds no membership of the group under the classic
// protocol (offsetStore.left): no member id (it left, or the group does not know it), or
// generation -1 (the group refused its generation; the id stays while it rejoins). A commit
// then goes out with generation -1, which the broker takes as a commit outside the group
// when the group has no member. False when it cannot say, and under the consumer protocol.
func (r *KReader) notMember() bool {
	id, generation, known := classicMembership(r.consumer, r.tc)
	return known && (id == "" || generation < 0)
}

// classicMembership is librdkafka's member id and generation under the classic protocol;
// known is false under the consumer protocol and when the consumer cannot say.
func classicMembership(consumer KafkaConsumer, tc ConsumerTopicConfig) (id string, generation int32, known bool) {
	g, ok := consumer.(groupMetadataReader)
	if !ok || tc.consumerProtocol() {
		return "", -1, false
	}
	md, err := g.GetConsumerGroupMetadata()
	if err != nil {
		return "", -1, false
	}
	return groupMembership(md)
}

// testHookLeavePolled, when set by a test, is called after each poll of leave, with whether
// the consumer owned no partition and the poll ran no rebalance callback.
var testHookLeavePolled func(r *KReader, quiet bool)

// withConsumer calls f with the consumer unless the reader is closed (Close waits for f), for
// reads of librdkafka's cached state from another goroutine (Work.Status). It reports whether
// it called f.
func (r *KReader) withConsumer(f func(KafkaConsumer)) bool {
	if !r.handle.enter() {
		return false
	}
	defer r.handle.leave()
	f(r.consumer)
	return true
}

// isClosed reports whether Close was called.
func (r *KReader) isClosed() bool { return r.handle.isClosed() }

// Assignments returns the partitions currently assigned to this reader.
func (r *KReader) Assignments(_ context.Context) ([]Assignment, error) {
	if !r.handle.enter() {
		return nil, errReaderClosed
	}
	defer r.handle.leave()
	parts, err := r.consumer.Assignment()
	if err != nil {
		return nil, wrapErr(err, "reading assignment")
	}
	out := make([]Assignment, 0, len(parts))
	for _, p := range parts {
		out = append(out, Assignment{Topic: topicName(p), Partition: p.Partition})
	}
	return out, nil
}
