package zkafka

// Metrics through OpenTelemetry: the instruments of a Work's run (workMetrics) and of a
// KWriter (writerMetrics), made from the MeterProvider of WithMeterProvider or
// WithClientMeterProviderOption. Without one the pointers are nil and every recording site is
// one branch. docs/operations.md lists every instrument with its unit and attributes.
//
// Cost. The SDK's Add or Record costs about as much as the engine spends on a whole message,
// most of it spent normalising the attribute set at every call (docs/performance.md). So:
//   - the attribute sets of a partition are built once (partitionMetrics) and every message
//     carries its partition's (Message.metrics): nothing is looked up or built per message;
//   - consumed messages are counted by the reader goroutine in a plain field and added to the
//     counter once per batch and partition (flushConsumed), not once per message;
//   - gauges are observable (runGauges, below): their callback takes the Work's Status when a
//     reader collects;
//   - the processing-time histogram has no partition attribute (a histogram per partition
//     multiplies the series by the partitions, and each attribute costs every Record).
//     It is the one instrument recorded once per message, and what a provider costs
//     (BenchmarkWorkNoopS8Metrics measures it). It is recorded only while the provider
//     enables it (Enabled), so an SDK View that drops it takes that cost away.
//
// Invariant: every message a Work consumed (dispatched to a virtual partition) is added to
// messaging.client.consumed.messages before any processor is woken for it, and every run of
// its handler that returned, or that the watchdog abandoned, is one messaging.process.duration
// measurement.

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/messagingconv"
)

// The library's own instruments (the messaging ones are messagingconv's).
const (
	metricInFlightMessages  = "zkafka.inflight.messages"
	metricInFlightBytes     = "zkafka.inflight.bytes"
	metricPausedPartitions  = "zkafka.partitions.paused"
	metricBreakerState      = "zkafka.breaker.state"
	metricLag               = "zkafka.partition.lag"
	metricOldestAge         = "zkafka.partition.oldest_unfinished.age"
	metricDeadLetters       = "zkafka.dead_letters.written"
	metricDeadLetterRetries = "zkafka.dead_letters.retries"
	metricRetries           = "zkafka.retries"
	metricAbandoned         = "zkafka.handlers.abandoned"
	metricSkipped           = "zkafka.messages.skipped"
	metricBatchSize         = "zkafka.batch.messages"
)

// durationBuckets are the bucket boundaries, in seconds, of the duration histograms: the
// ones the OpenTelemetry semantic conventions advise for messaging durations.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// batchSizeBuckets are the bucket boundaries of zkafka.batch.messages.
var batchSizeBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000}

// attrBatch marks the messaging.process.duration of a batch processor's call.
const attrBatch = "zkafka.batch"

// breakerGauge is the value of zkafka.breaker.state: 0 closed, 1 half-open, 2 open (ordered
// by how much gets through, unlike CircuitBreakerState, whose values are zkafka v2's).
func breakerGauge(s CircuitBreakerState) int64 {
	switch s {
	case CircuitBreakerStateOpen:
		return 2
	case CircuitBreakerStateHalfOpen:
		return 1
	default:
		return 0
	}
}

// errorType is the error.type of a failed run of a handler: a handful of values, so that a
// failure adds no series per error text.
type errorType uint8

const (
	errTypeTransient errorType = iota // any other error: may pass with time
	errTypeTimeout                    // ran past ProcessTimeoutMillis
	errTypePanic                      // the handler (or a hook for the message) panicked
	errTypeDecode                     // Message.Decode could not read the payload
	errTypePermanent                  // marked with PermanentError
	numErrorTypes
)

var errorTypeNames = [numErrorTypes]string{"transient", "timeout", "panic", "decode", "permanent"}

// errorTypeOf classifies a failed run's error (errclass.go has the classes).
func errorTypeOf(err error) errorType {
	var de *decodeError
	switch {
	case errors.Is(err, errProcessTimeout):
		return errTypeTimeout
	case isPanic(err):
		return errTypePanic
	case classify(err) == classTransient:
		return errTypeTransient
	case errors.As(err, &de):
		return errTypeDecode
	default:
		return errTypePermanent
	}
}

// workMetrics is the instruments of one Run of a Work. A nil *workMetrics records nothing;
// the methods called only on failures accept it.
type workMetrics struct {
	consumed    metric.Int64Counter
	process     metric.Float64Histogram
	batchSize   metric.Int64Histogram // only a batch Work's (batch_processor.go) records
	deadLetters metric.Int64Counter
	dltRetries  metric.Int64Counter
	retries     metric.Int64Counter
	abandoned   metric.Int64Counter
	skipped     metric.Int64Counter

	group  string
	topics map[string]*topicMetrics // reader goroutine only
	last   *partitionMetrics        // the partition of the last message read
	// unflushed holds the partitions with consumed messages not yet added to the counter.
	unflushed []*partitionMetrics

	meter  metric.Meter
	gauges *runGauges // nil: none registered
}

// topicMetrics is the processing-time attribute sets of one topic (on success, and per
// error.type), and its partitions'.
type topicMetrics struct {
	ok     []metric.RecordOption
	failed [numErrorTypes][]metric.RecordOption
	parts  []*partitionMetrics         // by partition id, below maxIndexedPartition
	others map[int32]*partitionMetrics // any other id (a Reader that is not a KReader)

	// The same with zkafka.batch true, for a batch's ProcessBatch call, and for a batch whose
	// BatchError failed some of its messages (error.type "partial").
	batchOK, batchPartial []metric.RecordOption
	batchFailed           [numErrorTypes][]metric.RecordOption
}

// maxIndexedPartition bounds the partition ids looked up by index rather than in a map.
const maxIndexedPartition = 1 << 16

// partitionMetrics is one partition's attribute sets, and its consumed messages not yet
// added to the counter.
type partitionMetrics struct {
	*topicMetrics
	topic     string
	partition int32
	polled    []metric.AddOption // messaging.client.consumed.messages
	counted   []metric.AddOption // the zkafka.* counters of its messages
	pending   int64              // consumed, not yet added (reader goroutine only)
}

// newWorkMetrics makes the instruments of rs, nil when the Work has no MeterProvider. An
// instrument the provider refuses is logged and left out (the API hands back a no-op one).
func newWorkMetrics(rs *runState) *workMetrics {
	w := rs.w
	if w.mp == nil {
		return nil
	}
	meter := w.mp.Meter(instrumentationName)
	mt := &workMetrics{group: rs.group, topics: map[string]*topicMetrics{}}
	consumed, err1 := messagingconv.NewClientConsumedMessages(meter)
	process, err2 := messagingconv.NewProcessDuration(meter, metric.WithExplicitBucketBoundaries(durationBuckets...))
	mt.consumed, mt.process = consumed.Inst(), process.Inst()
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		err1 = errors.Join(err1, err)
		return c
	}
	mt.deadLetters = counter(metricDeadLetters, "{message}", "Failed messages whose dead letter the broker acknowledged.")
	mt.dltRetries = counter(metricDeadLetterRetries, "{attempt}", "Dead letter writes that failed and were tried again.")
	mt.retries = counter(metricRetries, "{attempt}", "Runs of a handler that failed with a transient error and were retried (WithRetry).")
	mt.abandoned = counter(metricAbandoned, "{handler}", "Handlers given up on after their timeout and grace period.")
	mt.skipped = counter(metricSkipped, "{message}", "Failed messages finished without a dead letter.")
	batchSize, err3 := meter.Int64Histogram(metricBatchSize, metric.WithUnit("{message}"),
		metric.WithDescription("Messages per call of a batch processor (WorkFactory.CreateBatch)."),
		metric.WithExplicitBucketBoundaries(batchSizeBuckets...))
	mt.batchSize = batchSize
	err1 = errors.Join(err1, err3)
	mt.meter = meter
	if err := errors.Join(err1, err2); err != nil {
		w.logger.Warnw(rs.ctx, "zkafka: some metrics could not be made; they are not recorded", "topic", rs.topic, "error", err)
	}
	return mt
}

// observe registers the callback of the run's gauges; the run's bound and breaker exist.
func (mt *workMetrics) observe(rs *runState) {
	if mt == nil {
		return
	}
	g, err := newRunGauges(mt.meter, rs, mt.group)
	if err != nil {
		rs.w.logger.Warnw(rs.ctx, "zkafka: gauges could not be made; they are not observed", "topic", rs.topic, "error", err)
	}
	mt.gauges = g
}

// close unregisters the gauges' callback: a run that ended has nothing to observe.
func (mt *workMetrics) close() {
	if mt != nil && mt.gauges != nil && mt.gauges.reg != nil {
		_ = mt.gauges.reg.Unregister()
	}
}

// read counts m as consumed and gives it its partition's attribute sets. Reader goroutine.
func (mt *workMetrics) read(m *Message) {
	pm := mt.last
	if pm == nil || pm.partition != m.Partition || pm.topic != m.Topic {
		pm = mt.partition(m.Topic, m.Partition)
		mt.last = pm
	}
	if pm.pending == 0 {
		mt.unflushed = append(mt.unflushed, pm)
	}
	pm.pending++
	m.metrics = pm
}

// flushConsumed adds the messages read since the last flush to the consumed counter, one
// Add per partition. Reader goroutine.
func (mt *workMetrics) flushConsumed(ctx context.Context) {
	for _, pm := range mt.unflushed {
		mt.consumed.Add(ctx, pm.pending, pm.polled...)
		pm.pending = 0
	}
	mt.unflushed = mt.unflushed[:0]
}

// partition returns the attribute sets of a partition, made on its first message: an index
// into its topic's, which is the last message's topic without a lookup. Reader goroutine.
func (mt *workMetrics) partition(topic string, partition int32) *partitionMetrics {
	var tm *topicMetrics
	if mt.last != nil && mt.last.topic == topic {
		tm = mt.last.topicMetrics
	} else if tm = mt.topics[topic]; tm == nil {
		tm = mt.newTopic(topic)
	}
	indexed := partition >= 0 && partition < maxIndexedPartition
	switch {
	case indexed && int(partition) < len(tm.parts) && tm.parts[partition] != nil:
		return tm.parts[partition]
	case !indexed && tm.others[partition] != nil:
		return tm.others[partition]
	}
	system, group := semconv.MessagingSystemKafka, semconv.MessagingConsumerGroupName(mt.group)
	dest, part := semconv.MessagingDestinationName(topic), semconv.MessagingDestinationPartitionID(strconv.Itoa(int(partition)))
	pm := &partitionMetrics{
		topicMetrics: tm,
		topic:        topic,
		partition:    partition,
		polled:       []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(system, semconv.MessagingOperationName("poll"), dest, group, part))},
		counted:      []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(system, dest, group, part))},
	}
	if indexed {
		for int(partition) >= len(tm.parts) {
			tm.parts = append(tm.parts, nil)
		}
		tm.parts[partition] = pm
	} else {
		tm.others[partition] = pm
	}
	return pm
}

// newTopic makes the processing-time attribute sets of a topic.
func (mt *workMetrics) newTopic(topic string) *topicMetrics {
	system, group := semconv.MessagingSystemKafka, semconv.MessagingConsumerGroupName(mt.group)
	dest, process := semconv.MessagingDestinationName(topic), semconv.MessagingOperationName("process")
	tm := &topicMetrics{
		ok:     []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(system, process, dest, group))},
		others: map[int32]*partitionMetrics{},
	}
	batch := attribute.Bool(attrBatch, true)
	tm.batchOK = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(system, process, dest, group, batch))}
	tm.batchPartial = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(system, process, dest, group, batch,
		semconv.ErrorTypeKey.String("partial")))}
	for t := range numErrorTypes {
		set := attribute.NewSet(system, process, dest, group, semconv.ErrorTypeKey.String(errorTypeNames[t]))
		tm.failed[t] = []metric.RecordOption{metric.WithAttributeSet(set)}
		set = attribute.NewSet(system, process, dest, group, batch, semconv.ErrorTypeKey.String(errorTypeNames[t]))
		tm.batchFailed[t] = []metric.RecordOption{metric.WithAttributeSet(set)}
	}
	mt.topics[topic] = tm
	return tm
}

// processed records one run of m's handler that took d and ended with err. A histogram the
// provider drops (an SDK View with AggregationDrop) costs nothing more than the look.
func (mt *workMetrics) processed(ctx context.Context, m *Message, d time.Duration, err error) {
	if !mt.process.Enabled(ctx) {
		return
	}
	opts := m.metrics.ok
	if err != nil {
		opts = m.metrics.failed[errorTypeOf(err)]
	}
	mt.process.Record(ctx, d.Seconds(), opts...)
}

// abandon records a handler of m the watchdog gave up on after it ran for d.
func (mt *workMetrics) abandon(m *Message, d time.Duration) {
	if mt == nil || m.metrics == nil {
		return
	}
	ctx := context.Background()
	mt.abandoned.Add(ctx, 1, m.metrics.counted...)
	mt.process.Record(ctx, d.Seconds(), m.metrics.failed[errTypeTimeout]...)
}

// processedBatch records one call of ProcessBatch for n messages, the first m, that took d and
// returned err; whole is the error of the whole batch (nil for a success or a partial failure).
// The duration is messaging.process.duration with zkafka.batch true; the size goes to
// zkafka.batch.messages.
func (mt *workMetrics) processedBatch(ctx context.Context, m *Message, n int, d time.Duration, err, whole error) {
	if m.metrics == nil {
		return
	}
	mt.batchSize.Record(ctx, int64(n), m.metrics.ok...)
	if !mt.process.Enabled(ctx) {
		return
	}
	opts := m.metrics.batchOK
	switch {
	case whole != nil:
		opts = m.metrics.batchFailed[errorTypeOf(whole)]
	case err != nil:
		opts = m.metrics.batchPartial
	}
	mt.process.Record(ctx, d.Seconds(), opts...)
}

// abandonBatch counts a batch of n messages, the first m, whose ProcessBatch the watchdog gave
// up on after d: one abandoned handler, one batch duration that timed out.
func (mt *workMetrics) abandonBatch(m *Message, n int, d time.Duration) {
	if mt == nil || m.metrics == nil {
		return
	}
	ctx := context.Background()
	mt.abandoned.Add(ctx, 1, m.metrics.counted...)
	mt.batchSize.Record(ctx, int64(n), m.metrics.ok...)
	mt.process.Record(ctx, d.Seconds(), m.metrics.batchFailed[errTypeTimeout]...)
}

// deadLettered counts a dead letter of m the broker acknowledged.
func (mt *workMetrics) deadLettered(m *Message) {
	if mt != nil {
		count(mt.deadLetters, m)
	}
}

// deadLetterRetry counts a failed dead letter write of m that is tried again.
func (mt *workMetrics) deadLetterRetry(m *Message) {
	if mt != nil {
		count(mt.dltRetries, m)
	}
}

// retried counts a failed run of m's handler that is retried.
func (mt *workMetrics) retried(m *Message) {
	if mt != nil {
		count(mt.retries, m)
	}
}

// skippedOne counts a failed message finished without a dead letter.
func (mt *workMetrics) skippedOne(m *Message) {
	if mt != nil {
		count(mt.skipped, m)
	}
}

// count adds one to c for m's partition.
func count(c metric.Int64Counter, m *Message) {
	if m.metrics != nil {
		c.Add(context.Background(), 1, m.metrics.counted...)
	}
}

// writerMetrics is the instruments of one KWriter; nil when the Client has no MeterProvider.
type writerMetrics struct {
	sent     metric.Int64Counter
	duration metric.Float64Histogram
	attrs    []attribute.KeyValue // of every write
	ok       writeOptions

	mu     sync.Mutex // guards failed
	failed map[string]writeOptions
}

// writeOptions is the attribute sets of one outcome of a write.
type writeOptions struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

// newWriterMetrics makes the instruments of a writer to topic; nil without a MeterProvider.
func newWriterMetrics(mp metric.MeterProvider, topic string, logger Logger) *writerMetrics {
	if mp == nil {
		return nil
	}
	meter := mp.Meter(instrumentationName)
	sent, err1 := messagingconv.NewClientSentMessages(meter)
	duration, err2 := messagingconv.NewClientOperationDuration(meter, metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err := errors.Join(err1, err2); err != nil {
		logger.Warnw(context.Background(), "zkafka: some metrics could not be made; they are not recorded", "topic", topic, "error", err)
	}
	wm := &writerMetrics{
		sent:     sent.Inst(),
		duration: duration.Inst(),
		attrs: []attribute.KeyValue{semconv.MessagingSystemKafka, semconv.MessagingOperationName("send"),
			semconv.MessagingOperationTypeSend, semconv.MessagingDestinationName(topic)},
		failed: map[string]writeOptions{},
	}
	wm.ok = wm.options(attribute.NewSet(wm.attrs...))
	return wm
}

// options wraps an attribute set for Add and Record.
func (wm *writerMetrics) options(set attribute.Set) writeOptions {
	opt := metric.WithAttributeSet(set)
	return writeOptions{add: []metric.AddOption{opt}, rec: []metric.RecordOption{opt}}
}

// written records one write that started at start and ended with err.
func (wm *writerMetrics) written(ctx context.Context, start time.Time, err error) {
	opts := wm.ok
	if err != nil {
		opts = wm.failure(writeErrorType(err))
	}
	wm.sent.Add(ctx, 1, opts.add...)
	wm.duration.Record(ctx, time.Since(start).Seconds(), opts.rec...)
}

// failure returns the attribute sets of a failed write of error type t.
func (wm *writerMetrics) failure(t string) writeOptions {
	wm.mu.Lock()
	defer wm.mu.Unlock()
	opts, ok := wm.failed[t]
	if !ok {
		attrs := append(append([]attribute.KeyValue(nil), wm.attrs...), semconv.ErrorTypeKey.String(t))
		opts = wm.options(attribute.NewSet(attrs...))
		wm.failed[t] = opts
	}
	return opts
}

// writeErrorType is the error.type of a failed write: librdkafka's description of its error
// code (a fixed list), or timeout, canceled, closed, _OTHER.
func writeErrorType(err error) string {
	var kerr kafka.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, errWriterClosed):
		return "closed"
	case errors.As(err, &kerr):
		return kerr.Code().String()
	default:
		return semconv.ErrorTypeOther.Value.AsString()
	}
}

// The gauges of a Run's metrics: observable, so that the message path pays
// nothing for them. One callback, registered for the Run and unregistered by its stop, takes
// the Work's Status (status.go) when a metric reader collects, and observes from it the
// in-flight messages and bytes, the paused partitions, the breaker, and per assigned partition
// its lag and the age of its oldest unfinished message.

// runGauges is the gauges of one Run.
type runGauges struct {
	rs    *runState
	group string
	work  []metric.ObserveOption // the Work's attribute set

	inMsgs, inBytes, paused, breaker, lag metric.Int64ObservableGauge
	oldest                                metric.Float64ObservableGauge
	reg                                   metric.Registration // nil: not registered

	mu    sync.Mutex // guards parts: a provider's readers may collect at the same time
	parts map[tpKey][]metric.ObserveOption
}

// newRunGauges makes the gauges of rs and registers their callback.
func newRunGauges(meter metric.Meter, rs *runState, group string) (*runGauges, error) {
	g := &runGauges{rs: rs, group: group, parts: map[tpKey][]metric.ObserveOption{}}
	g.work = []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(semconv.MessagingSystemKafka,
		semconv.MessagingConsumerGroupName(group), semconv.MessagingClientID(rs.w.topicConfig.ClientID)))}
	var errs [6]error
	gauge := func(i int, name, unit, desc string) metric.Int64ObservableGauge {
		var inst metric.Int64ObservableGauge
		inst, errs[i] = meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return inst
	}
	g.inMsgs = gauge(0, metricInFlightMessages, "{message}", "Messages read and not yet finished or dropped.")
	g.inBytes = gauge(1, metricInFlightBytes, "By", "Payload bytes of the messages in flight.")
	g.paused = gauge(2, metricPausedPartitions, "{partition}", "Assigned partitions the reader has paused (in-flight bound, open circuit breaker or stop).")
	g.breaker = gauge(3, metricBreakerState, "1", "Circuit breaker state: 0 closed, 1 half-open, 2 open.")
	g.lag = gauge(4, metricLag, "{message}", "End offset minus committed offset of an assigned partition.")
	g.oldest, errs[5] = meter.Float64ObservableGauge(metricOldestAge, metric.WithUnit("s"),
		metric.WithDescription("Time since the oldest unfinished message of an assigned partition was read; 0 when none is."))
	if err := errors.Join(errs[:]...); err != nil {
		return g, err
	}
	reg, err := meter.RegisterCallback(g.observe, g.inMsgs, g.inBytes, g.paused, g.breaker, g.lag, g.oldest)
	g.reg = reg
	return g, err
}

// observe is the callback: it observes every gauge from one Status of the Work.
func (g *runGauges) observe(_ context.Context, o metric.Observer) error {
	st := g.rs.w.Status()
	if !st.Running {
		return nil
	}
	o.ObserveInt64(g.inMsgs, st.InFlight.Messages, g.work...)
	o.ObserveInt64(g.inBytes, st.InFlight.Bytes, g.work...)
	if gate := g.rs.loop.gate; gate != nil {
		state, _ := gate.describe()
		o.ObserveInt64(g.breaker, breakerGauge(state), g.work...)
	}
	if g.rs.published.Load() == nil {
		return nil // a Reader that is not the library's own: its partitions are unknown
	}
	paused := 0
	for _, p := range st.Partitions {
		if p.Paused {
			paused++
		}
		opts := g.partition(p.Topic, p.Partition)
		if p.Lag >= 0 {
			o.ObserveInt64(g.lag, p.Lag, opts...)
		}
		age := 0.0
		if p.Oldest != nil {
			age = p.Oldest.AgeSeconds
		}
		o.ObserveFloat64(g.oldest, age, opts...)
	}
	o.ObserveInt64(g.paused, int64(paused), g.work...)
	return nil
}

// partition returns the attribute set of a partition's gauges.
func (g *runGauges) partition(topic string, partition int32) []metric.ObserveOption {
	k := tpKey{topic, partition}
	g.mu.Lock()
	defer g.mu.Unlock()
	opts, ok := g.parts[k]
	if !ok {
		opts = []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(semconv.MessagingSystemKafka,
			semconv.MessagingDestinationName(topic), semconv.MessagingConsumerGroupName(g.group),
			semconv.MessagingDestinationPartitionID(strconv.Itoa(int(partition)))))}
		g.parts[k] = opts
	}
	return opts
}
