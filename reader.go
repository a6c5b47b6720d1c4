package zkafka

// KReader: the Reader over a confluent-kafka-go consumer. It polls, turns records into
// Messages, stores finished offsets through the commit tracker (commit.go), handles the
// rebalance callbacks (assign, and revoke, which first tells the Work through
// rebalanceListener: revoke.go), pauses and resumes for the reader loop (readloop.go), and
// commits at revoke and Close. Read, for users of a bare Reader, is poll in a loop.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
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

// KafkaConsumer is the part of confluent-kafka-go's *kafka.Consumer the library uses. It
// exists so tests can substitute the consumer (WithConsumerProvider).
type KafkaConsumer interface {
	SubscribeTopics(topics []string, rebalanceCb kafka.RebalanceCb) error
	Poll(timeoutMs int) kafka.Event
	Commit() ([]kafka.TopicPartition, error)
	CommitOffsets(offsets []kafka.TopicPartition) ([]kafka.TopicPartition, error)
	StoreOffsets(offsets []kafka.TopicPartition) ([]kafka.TopicPartition, error)
	Assign(partitions []kafka.TopicPartition) error
	Unassign() error
	IncrementalAssign(partitions []kafka.TopicPartition) error
	IncrementalUnassign(partitions []kafka.TopicPartition) error
	GetRebalanceProtocol() string
	Assignment() ([]kafka.TopicPartition, error)
	AssignmentLost() bool
	Pause(partitions []kafka.TopicPartition) error
	Resume(partitions []kafka.TopicPartition) error
	Seek(partition kafka.TopicPartition, ignoredTimeoutMs int) error
	Close() error
}

// ReaderOption customises a KReader created by Client.Reader.
type ReaderOption func(*KReader)

// RFormatterOption sets the Formatter a reader decodes with; use it with FormatterType
// CustomFmt (it takes precedence over the configured formatter).
func RFormatterOption(f Formatter) ReaderOption {
	return func(r *KReader) {
		if f != nil {
			r.fmt = formatterAdapter{f}
		}
	}
}

// formatterAdapter lets a user Formatter serve as a kFormatter.
type formatterAdapter struct{ f Formatter }

func (a formatterAdapter) marshall(req marshReq) ([]byte, error) { return a.f.Marshall(req.subject) }
func (a formatterAdapter) unmarshal(req unmarshReq) error        { return a.f.Unmarshal(req.data, req.target) }

// readerArgs is what Client hands to newReader.
type readerArgs struct {
	conf        Config
	tc          ConsumerTopicConfig
	groupPrefix string
	fmt         kFormatter
	logger      Logger
	hooks       LifecycleHooks
	provider    func(map[string]any) (KafkaConsumer, error)
	opts        []ReaderOption
}

// KReader is the Reader over a confluent-kafka-go consumer. Offsets are stored only up to the
// first message not yet Done, so Done may be called in any order and from any goroutine.
// Read itself must be called from one goroutine at a time.
type KReader struct {
	consumer    KafkaConsumer
	tc          ConsumerTopicConfig
	groupID     string
	fmt         kFormatter
	logger      Logger
	hooks       LifecycleHooks
	readTimeout time.Duration

	tracker  *commitTracker
	failures *failureLog // the consumer's repeating errors, rate-limited

	mu       sync.Mutex // guards assigned, paused, closed, listener
	assigned map[tpKey]struct{}
	paused   bool
	closed   bool
	listener rebalanceListener
}

// rebalanceListener is told about partitions leaving and joining the reader. The Work engine
// uses it to drop queued messages of revoked partitions and wait for their in-flight ones.
type rebalanceListener interface {
	revoked(parts []tpKey)
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
		tracker:     newCommitTracker(),
		assigned:    map[tpKey]struct{}{},
	}
	if r.logger == nil {
		r.logger = NoopLogger{}
	}
	r.failures = newFailureLog(r.logger)
	for _, o := range args.opts {
		o(r)
	}
	if r.fmt == nil {
		return nil, errConfig("formatter custom needs RFormatterOption (ConsumerTopicConfig.Formatter is %q)", tc.Formatter)
	}
	cfg := makeConsumerConfig(args.conf, tc, args.groupPrefix)
	provider := args.provider
	if provider == nil {
		provider = defaultConsumerProvider
	}
	consumer, err := provider(configMapToAny(cfg))
	if err != nil {
		return nil, fmt.Errorf("zkafka: creating consumer %s: %w", tc.ClientID, err)
	}
	r.consumer = consumer
	if err := consumer.SubscribeTopics(tc.topics(), r.rebalance); err != nil {
		_ = consumer.Close()
		return nil, fmt.Errorf("zkafka: subscribing consumer %s to %v: %w", tc.ClientID, tc.topics(), err)
	}
	return r, nil
}

// Read returns the next message, or nil and no error when none arrived within the read
// timeout (see Reader). Finished offsets are stored before each poll.
func (r *KReader) Read(ctx context.Context) (*Message, error) {
	if r.isClosed() {
		return nil, errors.New("zkafka: read from a closed reader")
	}
	r.storeFinished()
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
	ev := r.consumer.Poll(int(timeout / time.Millisecond))
	switch e := ev.(type) {
	case nil:
		return nil, nil
	case *kafka.Message:
		if e.TopicPartition.Error != nil {
			r.logger.Warnw(context.Background(), "zkafka: consumer reported a partition error",
				"topic", topicName(e.TopicPartition), "partition", e.TopicPartition.Partition, "error", e.TopicPartition.Error)
			return nil, nil
		}
		return r.newMessage(e), nil
	case kafka.Error:
		if e.IsFatal() {
			return nil, fmt.Errorf("zkafka: fatal consumer error: %w", e)
		}
		if brokerFailure(e) {
			r.failures.errorf(context.Background(), "zkafka: consumer cannot use the brokers; it keeps trying", e, "group", r.groupID, "topics", r.tc.topics())
		} else {
			r.failures.warnf(context.Background(), "zkafka: consumer error", e, "group", r.groupID)
		}
		return nil, nil
	default:
		return nil, nil
	}
}

// newMessage wraps a confluent message and records it with the commit tracker.
func (r *KReader) newMessage(km *kafka.Message) *Message {
	topic := topicName(km.TopicPartition)
	trk := r.tracker.get(topic, km.TopicPartition.Partition)
	offset := int64(km.TopicPartition.Offset)
	m := &Message{
		Key:       string(km.Key),
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
		seq:       trk.add(offset),
	}
	return m
}

// topicName is tp's topic, "" when it has none.
func topicName(tp kafka.TopicPartition) string {
	if tp.Topic == nil {
		return ""
	}
	return *tp.Topic
}

// storeFinished stores, for every partition whose finished prefix moved, the offset after it.
// librdkafka commits stored offsets every auto.commit.interval.ms, on revoke and on close.
func (r *KReader) storeFinished() {
	r.store(r.tracker.storable(nil))
}

// store hands offsets to librdkafka. A store refused for a partition this reader no longer
// owns is expected during a rebalance and is only logged at debug level.
func (r *KReader) store(offs []storedOffset) {
	if len(offs) == 0 {
		return
	}
	tps := make([]kafka.TopicPartition, len(offs))
	for i, o := range offs {
		topic := o.topic
		tps[i] = kafka.TopicPartition{Topic: &topic, Partition: o.partition, Offset: kafka.Offset(o.offset)}
	}
	if _, err := r.consumer.StoreOffsets(tps); err != nil {
		r.logger.Debugw(context.Background(), "zkafka: offsets not stored (partition no longer assigned?)", "error", err)
	}
}

// commit stores what is finished and commits stored offsets synchronously.
func (r *KReader) commit() error {
	r.storeFinished()
	return r.commitStored()
}

// commitStored commits the stored offsets synchronously. Nothing to commit (ErrNoOffset) and
// no assignment left to commit for (ErrState) are not errors.
func (r *KReader) commitStored() error {
	if _, err := r.consumer.Commit(); err != nil {
		var kerr kafka.Error
		if errors.As(err, &kerr) && (kerr.Code() == kafka.ErrNoOffset || kerr.Code() == kafka.ErrState) {
			return nil
		}
		return fmt.Errorf("zkafka: committing offsets of %s: %w", r.groupID, err)
	}
	return nil
}

// rebalance is the consumer's rebalance callback; it runs inside Poll (or Close).
func (r *KReader) rebalance(_ *kafka.Consumer, ev kafka.Event) error {
	cooperative := r.consumer.GetRebalanceProtocol() == "COOPERATIVE"
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		r.assign(e.Partitions, cooperative)
	case kafka.RevokedPartitions:
		r.revoke(e.Partitions, cooperative)
	}
	return nil
}

// assign takes newly assigned partitions: fresh commit trackers, the assignment (incremental
// under the cooperative protocol), and a pause if the reader is paused now.
func (r *KReader) assign(parts []kafka.TopicPartition, cooperative bool) {
	ctx := context.Background()
	for _, p := range parts {
		r.tracker.reset(topicName(p), p.Partition)
	}
	var err error
	if cooperative {
		err = r.consumer.IncrementalAssign(parts)
	} else {
		err = r.consumer.Assign(parts)
	}
	if err != nil {
		r.logger.Errorw(ctx, "zkafka: assigning partitions failed", "group", r.groupID, "error", err)
		return
	}
	r.mu.Lock()
	if !cooperative {
		clear(r.assigned)
	}
	for _, p := range parts {
		r.assigned[tpKey{topicName(p), p.Partition}] = struct{}{}
	}
	paused := r.paused
	r.mu.Unlock()
	if paused {
		if err := r.consumer.Pause(parts); err != nil {
			r.logger.Warnw(ctx, "zkafka: pausing newly assigned partitions failed", "error", err)
		}
	}
	r.logger.Infow(ctx, "zkafka: partitions assigned", "group", r.groupID, "partitions", partitionList(parts), "protocol", r.consumer.GetRebalanceProtocol())
}

// revoke lets partitions go (G6): it tells the listener (the Work's reader loop, which drops
// their queued messages and waits for the in-flight ones), stores and commits what finished
// unless the assignment was lost, drops their trackers, lifts their pause and unassigns them.
func (r *KReader) revoke(parts []kafka.TopicPartition, cooperative bool) {
	ctx := context.Background()
	keys := make([]tpKey, len(parts))
	set := make(map[tpKey]struct{}, len(parts))
	for i, p := range parts {
		keys[i] = tpKey{topicName(p), p.Partition}
		set[keys[i]] = struct{}{}
	}
	r.tracker.markRevoking(keys)
	r.mu.Lock()
	l := r.listener
	r.mu.Unlock()
	if l != nil {
		l.revoked(keys)
	}
	lost := r.consumer.AssignmentLost()
	if !lost {
		r.store(r.tracker.storable(func(k tpKey) bool { _, ok := set[k]; return ok }))
		if err := r.commitStored(); err != nil {
			r.logger.Warnw(ctx, "zkafka: committing on revoke failed", "group", r.groupID, "error", err)
		}
	}
	for _, k := range keys {
		r.tracker.remove(k.topic, k.partition)
	}
	r.mu.Lock()
	for _, k := range keys {
		delete(r.assigned, k)
	}
	paused := r.paused
	r.mu.Unlock()
	if paused {
		// librdkafka keeps a partition's pause across Unassign and Assign: a partition that
		// left paused would come back paused, whatever the reader's state is then. (Resuming
		// it on assign instead left partitions unread for minutes under make chaos.)
		if err := r.consumer.Resume(parts); err != nil {
			r.logger.Warnw(ctx, "zkafka: resuming revoked partitions failed", "group", r.groupID, "error", err)
		}
	}
	var err error
	if cooperative {
		err = r.consumer.IncrementalUnassign(parts)
	} else {
		err = r.consumer.Unassign()
	}
	if err != nil {
		r.logger.Warnw(ctx, "zkafka: unassigning partitions failed", "group", r.groupID, "error", err)
	}
	r.logger.Infow(ctx, "zkafka: partitions revoked", "group", r.groupID, "partitions", partitionList(parts), "lost", lost)
}

// partitionList formats partitions as "topic/partition,…" for logs.
func partitionList(parts []kafka.TopicPartition) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s/%d", topicName(p), p.Partition)
	}
	return b.String()
}

// setPaused pauses or resumes every assigned partition. While paused the consumer keeps
// polling (rebalances are served and the group membership is kept) but fetches nothing.
func (r *KReader) setPaused(paused bool) {
	if testHookSetPaused != nil {
		testHookSetPaused(paused)
	}
	r.mu.Lock()
	if r.paused == paused {
		r.mu.Unlock()
		return
	}
	r.paused = paused
	parts := make([]kafka.TopicPartition, 0, len(r.assigned))
	for k := range r.assigned {
		topic := k.topic
		parts = append(parts, kafka.TopicPartition{Topic: &topic, Partition: k.partition})
	}
	r.mu.Unlock()
	if len(parts) == 0 {
		return
	}
	var err error
	if paused {
		err = r.consumer.Pause(parts)
	} else {
		err = r.consumer.Resume(parts)
	}
	if err != nil {
		r.logger.Warnw(context.Background(), "zkafka: pause/resume failed", "paused", paused, "error", err)
	}
}

// testHookSetPaused, when set by a test, is called with every setPaused.
var testHookSetPaused func(paused bool)

// setListener sets who is told about revoked partitions (nil: nobody).
func (r *KReader) setListener(l rebalanceListener) {
	r.mu.Lock()
	r.listener = l
	r.mu.Unlock()
}

// Close stores and commits what is finished, leaves the group and closes the consumer.
// Messages not finished are not committed: the group reads them again. Safe to call twice.
func (r *KReader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.storeFinished()
	if err := r.consumer.Close(); err != nil {
		return fmt.Errorf("zkafka: closing consumer %s: %w", r.tc.ClientID, err)
	}
	return nil
}

// isClosed reports whether Close was called.
func (r *KReader) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Assignments returns the partitions currently assigned to this reader.
func (r *KReader) Assignments(_ context.Context) ([]Assignment, error) {
	if r.isClosed() {
		return nil, errors.New("zkafka: assignments of a closed reader")
	}
	parts, err := r.consumer.Assignment()
	if err != nil {
		return nil, fmt.Errorf("zkafka: reading assignment: %w", err)
	}
	out := make([]Assignment, 0, len(parts))
	for _, p := range parts {
		out = append(out, Assignment{Topic: topicName(p), Partition: p.Partition})
	}
	return out, nil
}
