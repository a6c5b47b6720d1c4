package zkafka

// KWriter: the Writer over a confluent-kafka-go producer. It encodes with the formatter, runs
// the PreWrite and PostAck hooks, produces and waits for the delivery report (in a transaction
// when configured), drains the producer's events, and replaces a producer that hit a fatal
// error. Client (client.go) caches writers; the dead letter path (deadletter.go) writes raw
// records through writeMessage.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/google/uuid"
	"github.com/zkafka-go/zkafka/internal/format"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Writer writes records to one topic. Every write waits for the broker's delivery report.
type Writer interface {
	// Write encodes value with the writer's formatter and writes it under a random key (a
	// UUID v4 string), which spreads records evenly over the partitions.
	Write(ctx context.Context, value any, opts ...WriteOption) (Response, error)
	// WriteKey encodes value with the writer's formatter and writes it under key.
	WriteKey(ctx context.Context, key string, value any, opts ...WriteOption) (Response, error)
	// WriteRaw writes value as it is. A nil key is written as no key at all; a pointer to ""
	// is written as an empty key.
	WriteRaw(ctx context.Context, key *string, value []byte, opts ...WriteOption) (Response, error)
	// Close waits for what is queued to be delivered (up to 10 s, or 1 s while no broker
	// can be used), drops the rest, and closes the producer. Writes after Close return an
	// error.
	Close()
}

// KafkaProducer is the producer a KWriter writes through: zkafka v2's method set, which
// confluent-kafka-go's *kafka.Producer has. WithProducerProvider substitutes it (in tests).
//
// A KWriter uses more of the producer when the value it is given has it, found by type
// assertion: Events (producer errors are logged), Flush (Close waits for queued records),
// GetFatalError (a producer in a fatal state is replaced) and InitTransactions,
// BeginTransaction, CommitTransaction and AbortTransaction (required for
// ProducerTopicConfig.Transaction). *kafka.Producer has them all. Without them, writes work
// as in zkafka v2: each waits for its own delivery report.
type KafkaProducer interface {
	Produce(msg *kafka.Message, deliveryChan chan kafka.Event) error
	Close()
}

var _ KafkaProducer = (*kafka.Producer)(nil)

// The parts of *kafka.Producer beyond KafkaProducer that a KWriter uses when present.
type (
	// eventSource hands out the channel of producer errors and logs.
	eventSource interface {
		Events() chan kafka.Event
	}
	// flusher waits for queued records on Close.
	flusher interface {
		Flush(timeoutMs int) int
	}
	// transactor runs transactions.
	transactor interface {
		InitTransactions(ctx context.Context) error
		BeginTransaction() error
		CommitTransaction(ctx context.Context) error
		AbortTransaction(ctx context.Context) error
	}
)

var (
	_ eventSource = (*kafka.Producer)(nil)
	_ flusher     = (*kafka.Producer)(nil)
	_ transactor  = (*kafka.Producer)(nil)
)

// WriterSettings are what WriterOptions set on a writer created by Client.Writer.
type WriterSettings struct {
	// formatter replaces the configured formatter when set (WFormatterOption).
	formatter format.Formatter
	// DisableTracePropagation stops the writer from injecting the trace context into record
	// headers (default false: the client's propagator, when set, injects it).
	DisableTracePropagation bool
}

// WriterOption customises a KWriter created by Client.Writer. Options are applied only when
// the writer is created; a cached writer returned later keeps its first options.
type WriterOption func(*WriterSettings)

// WFormatterOption sets the Formatter a writer encodes with; use it with FormatterType
// CustomFmt (it takes precedence over the configured formatter). Default: none.
func WFormatterOption(f Formatter) WriterOption {
	return func(s *WriterSettings) {
		if f != nil {
			s.formatter = format.Wrap(f)
		}
	}
}

// WithWriterSettings sets the writer's DisableTracePropagation (default false); a formatter
// set by WFormatterOption is kept.
func WithWriterSettings(settings WriterSettings) WriterOption {
	return func(s *WriterSettings) { s.DisableTracePropagation = settings.DisableTracePropagation }
}

// WriteOption changes one record before it is written.
type WriteOption interface {
	apply(msg *kafka.Message)
}

// WithHeaders adds headers to the record, replacing headers of the same name.
func WithHeaders(headers map[string]string) WriteOption {
	return withHeaders(headers)
}

type withHeaders map[string]string

func (h withHeaders) apply(msg *kafka.Message) {
	for k, v := range h {
		setHeader(&msg.Headers, k, []byte(v))
	}
}

// closeFlushTimeout bounds how long Close waits for queued records to be delivered.
const closeFlushTimeout = 10 * time.Second

// closeUnreachableWait bounds it while the producer cannot use its brokers.
const closeUnreachableWait = time.Second

// errWriterClosed is returned by writes after Close.
var errWriterClosed = errors.New("writer is closed")

// KWriter is the Writer over a confluent-kafka-go producer. Writes from many goroutines run
// concurrently: each waits on its own delivery channel. A goroutine owned by the writer
// drains the producer's Events channel (errors and logs) until Close.
//
// A producer that hits a fatal error (librdkafka's idempotent or transactional producer, for
// example when the broker reports an out-of-order sequence number) refuses every later record;
// librdkafka's remedy is a new producer. The writer makes one when a write fails and the
// producer reports a fatal error: that write fails (or, when the record was refused before it
// was queued, is retried once on the new producer), and later writes go to the new producer.
//
// Guards: any number of goroutines write at once (the user's, the dead letter writes), while
// the producer's drain goroutine reports deliveries, Status reads its health and Close may
// come from any goroutine.
type KWriter struct {
	// producer is guarded by mu: a write replaces it (replaceIfFatal, use) holding mu
	// exclusively; writes read it holding mu shared; once closed is set nothing replaces it,
	// and Close reads it without mu.
	producer  KafkaProducer
	producers *producers                    // immutable; makes, drains and retires the writer's producers (producer.go)
	topic     string                        // immutable
	tc        ProducerTopicConfig           // immutable
	fmt       format.Formatter              // immutable
	logger    Logger                        // immutable
	tracer    trace.Tracer                  // immutable; nil: no spans
	metrics   *writerMetrics                // immutable; nil: no metrics
	p         propagation.TextMapPropagator // immutable
	hooks     LifecycleHooks                // immutable
	settings  WriterSettings                // immutable after newWriter

	// mu guards closed and producer; writes hold it shared only while they hand a record to
	// the producer (or run a transaction), Close holds it exclusively to stop new writes.
	mu     sync.RWMutex
	closed bool // guarded by mu
	// txMu serialises transactions: a producer runs one at a time.
	txMu sync.Mutex

	closeOnce sync.Once
	closeErr  error         // written inside closeOnce, read after it
	done      chan struct{} // immutable; closed when Close has finished with the producer
	drained   chan struct{} // as producer; closed when the current producer's drain goroutine has returned
}

// writerArgs is what Client hands to newWriter.
type writerArgs struct {
	conf     Config
	tc       ProducerTopicConfig
	fmt      format.Formatter
	logger   Logger
	tp       trace.TracerProvider
	mp       metric.MeterProvider
	p        propagation.TextMapPropagator
	hooks    LifecycleHooks
	provider func(map[string]any) (KafkaProducer, error)
	opts     []WriterOption
}

// newWriter builds a KWriter: applies the options, checks it has a formatter, creates the
// producer (and initialises transactions when tc.Transaction) and starts draining events.
func newWriter(ctx context.Context, args writerArgs) (*KWriter, error) {
	w := &KWriter{
		topic:   args.tc.Topic,
		tc:      args.tc,
		fmt:     args.fmt,
		logger:  args.logger,
		p:       args.p,
		hooks:   args.hooks,
		done:    make(chan struct{}),
		drained: make(chan struct{}),
	}
	if w.logger == nil {
		w.logger = stderrLogger
	}
	if args.tp != nil {
		w.tracer = args.tp.Tracer(instrumentationName)
	}
	w.metrics = newWriterMetrics(args.mp, w.topic, w.logger)
	for _, opt := range args.opts {
		if opt != nil {
			opt(&w.settings)
		}
	}
	if w.settings.formatter != nil {
		w.fmt = w.settings.formatter
	}
	if w.fmt == nil {
		return nil, errConfig("formatter %s needs WFormatterOption", string(CustomFmt))
	}
	provider := args.provider
	if provider == nil {
		provider = defaultProducerProvider
	}
	conf := makeProducerConfig(args.conf, args.tc)
	failures := newFailureLog(w.logger)
	w.producers = &producers{
		tc:       args.tc,
		failures: failures,
		logs:     routeLogs(conf, args.tc.AdditionalProps, w.logger, failures),
		health:   newBrokerWatch(producerRecovered(w.logger, args.tc, func() { w.producers.brokers.flush() })),
		timeout:  deliveryTimeout(conf),
		stop:     make(chan struct{}),
	}
	w.producers.make = func() (KafkaProducer, error) { return provider(configMapToAny(conf)) }
	w.producers.brokers = &brokerReport{watch: w.producers.health, failures: failures, warn: "zkafka: producer error",
		msg: "zkafka: producer cannot use the brokers; it keeps trying", kv: []any{"topic", args.tc.Topic, "client", args.tc.ClientID}}
	if h := args.hooks.BrokerStateChanged; h != nil {
		w.producers.health.setListener(brokerHook(h, failures, args.tc.Topic, "", args.tc.ClientID))
	}
	producer, err := w.producers.start(ctx)
	if err != nil {
		w.producers.logs.close()
		return nil, err
	}
	w.use(producer)
	return w, nil
}

// use makes p the writer's producer and starts draining its events. The caller holds mu
// exclusively, or is newWriter.
func (w *KWriter) use(p KafkaProducer) {
	w.producer = p
	w.drained = w.producers.watch(p)
}

// replaceIfFatal makes a new producer when failed, the producer a write just used, is in a
// fatal state and is still the writer's. It reports whether the writer's producer is now a
// different one than failed (made here or by a concurrent write).
func (w *KWriter) replaceIfFatal(ctx context.Context, failed KafkaProducer) bool {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return false
	}
	if w.producer != failed {
		w.mu.Unlock()
		return true
	}
	fatal := fatalError(failed)
	if fatal == nil {
		w.mu.Unlock()
		return false
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeFlushTimeout)
	p, err := w.producers.start(sctx)
	cancel()
	if err != nil {
		w.mu.Unlock()
		w.logger.Errorw(ctx, "zkafka: producer has a fatal error and a new one could not be made", "topic", w.topic, "fatal", fatal, "error", err)
		return false
	}
	w.use(p)
	w.mu.Unlock()
	w.logger.Errorw(ctx, "zkafka: producer had a fatal error; replaced it with a new one", "topic", w.topic, "fatal", fatal)
	w.producers.retire(failed) // Close waits for it (G14)
	return true
}

// Write encodes value and writes it under a random UUID key (see Writer).
func (w *KWriter) Write(ctx context.Context, value any, opts ...WriteOption) (Response, error) {
	return w.WriteKey(ctx, uuid.NewString(), value, opts...)
}

// WriteKey encodes value and writes it under key (see Writer).
func (w *KWriter) WriteKey(ctx context.Context, key string, value any, opts ...WriteOption) (Response, error) {
	b, err := w.marshall(value)
	if err != nil {
		return Response{}, err
	}
	return w.send(ctx, []byte(key), b, nil, opts)
}

// WriteRaw writes value as it is; a nil key stays nil (see Writer).
func (w *KWriter) WriteRaw(ctx context.Context, key *string, value []byte, opts ...WriteOption) (Response, error) {
	var k []byte
	if key != nil {
		k = []byte(*key)
	}
	return w.send(ctx, k, value, nil, opts)
}

// writeMessage writes exactly key, value and headers (a nil key stays nil) and waits for the
// ack; the dead letter path uses it to copy a record.
func (w *KWriter) writeMessage(ctx context.Context, key []byte, value []byte, headers []kafka.Header) (Response, error) {
	return w.send(ctx, key, value, headers, nil)
}

func (w *KWriter) marshall(value any) ([]byte, error) {
	if w.fmt == nil {
		return nil, errConfig("writer for topic %s has no formatter", w.topic)
	}
	b, err := w.fmt.Encode(w.topic, value)
	if err != nil {
		return nil, wrapErr(err, "encoding a %T for topic %s", value, w.topic)
	}
	return b, nil
}

// send writes one record and waits for its delivery report, ctx or Close, whichever comes
// first. The order of header sources, later ones replacing earlier ones of the same name:
// headers, opts, the PreWrite hook, the propagator.
func (w *KWriter) send(ctx context.Context, key, value []byte, headers []kafka.Header, opts []WriteOption) (resp Response, err error) {
	if wm := w.metrics; wm != nil {
		start := time.Now()
		defer func() { wm.written(ctx, start, err) }()
	}
	if err := ctx.Err(); err != nil {
		return Response{}, wrapErr(err, "writing to topic %s", w.topic)
	}
	msg := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &w.topic, Partition: kafka.PartitionAny},
		Key:            key,
		Value:          value,
		Headers:        append([]kafka.Header(nil), headers...),
	}
	for _, o := range opts {
		if o != nil {
			o.apply(msg)
		}
	}
	if w.tracer != nil {
		var span trace.Span
		ctx, span = w.tracer.Start(ctx, w.topic+" publish",
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(messagingSystemKafka, attrMessagingDestination.String(w.topic),
				attrMessagingOperation.String("publish")))
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			} else {
				span.SetAttributes(attrMessagingPartition.Int(int(resp.Partition)), attrMessagingOffset.Int64(resp.Offset))
			}
			span.End()
		}()
	}
	w.beforeProduce(ctx, msg)

	produceTime := time.Now()
	for attempt := 0; ; attempt++ {
		var used KafkaProducer
		var queued bool
		if w.tc.Transaction {
			resp, used, queued, err = w.sendInTransaction(ctx, msg)
		} else {
			resp, used, queued, err = w.produceAndWait(ctx, msg)
		}
		if err == nil || used == nil || !w.replaceIfFatal(ctx, used) || queued || attempt > 0 {
			break
		}
		// Refused before it was queued, by a producer since replaced: try the new one once.
	}
	if err != nil {
		return resp, err
	}
	w.postAck(ctx, produceTime)
	return resp, nil
}

// propagates reports whether the writer injects the trace context into the headers.
func (w *KWriter) propagates() bool { return w.p != nil && !w.settings.DisableTracePropagation }

// beforeProduce runs the PreWrite hook and the propagator on msg's headers, then drops an
// empty header list: the last step of every record before Produce (send, queuedRecord.queue).
func (w *KWriter) beforeProduce(ctx context.Context, msg *kafka.Message) {
	w.preWrite(ctx, msg)
	if w.propagates() {
		w.p.Inject(ctx, kafkaHeaderCarrier{headers: &msg.Headers})
	}
	if len(msg.Headers) == 0 {
		msg.Headers = nil
	}
}

// produceAndWait hands msg to the producer and waits for its delivery report. The shared
// lock is held only while producing so that Close cannot destroy the producer underneath. It
// returns the producer it used, and whether the record was queued (false when Produce
// refused it).
func (w *KWriter) produceAndWait(ctx context.Context, msg *kafka.Message) (_ Response, used KafkaProducer, queued bool, _ error) {
	delivery := make(chan kafka.Event, 1)
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return Response{}, nil, false, wrapErr(errWriterClosed, "writing to topic %s", w.topic)
	}
	used = w.producer
	err := used.Produce(msg, delivery)
	w.mu.RUnlock()
	if err != nil {
		return Response{}, used, false, wrapErr(err, "writing to topic %s", w.topic)
	}
	resp, err := w.producers.await(ctx, delivery, w.done)
	return resp, used, true, err
}

// sendInTransaction writes msg in a transaction of its own and commits it. Transactions of a
// producer run one at a time, so transactional writes are serialised; Close waits for one in
// progress. It returns the producer it used, and whether the record was queued (false when
// the transaction could not begin or Produce refused the record).
func (w *KWriter) sendInTransaction(ctx context.Context, msg *kafka.Message) (_ Response, used KafkaProducer, queued bool, _ error) {
	w.txMu.Lock()
	defer w.txMu.Unlock()
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return Response{}, nil, false, wrapErr(errWriterClosed, "writing to topic %s", w.topic)
	}
	resp, queued, err := w.producers.transact(ctx, w.producer, msg)
	return resp, w.producer, queued, err
}

// preWrite runs the PreWrite hook and adds its headers. A failing or panicking hook is
// logged and the write goes on.
func (w *KWriter) preWrite(ctx context.Context, msg *kafka.Message) {
	if w.hooks.PreWrite == nil {
		return
	}
	var resp LifecyclePreWriteResp
	err := catch("lifecycle hook", func() (err error) {
		resp, err = w.hooks.PreWrite(ctx, LifecyclePreWriteMeta{})
		return err
	})
	if err != nil {
		logFailure(ctx, w.producers.failures, "zkafka: PreWrite hook failed", err, "topic", w.topic)
	}
	for k, v := range resp.Headers {
		setHeader(&msg.Headers, k, v)
	}
}

// postAck runs the PostAck hook; a failing or panicking hook is logged.
func (w *KWriter) postAck(ctx context.Context, produceTime time.Time) {
	if w.hooks.PostAck == nil {
		return
	}
	err := catch("lifecycle hook", func() error {
		return w.hooks.PostAck(ctx, LifecyclePostAckMeta{Topic: w.topic, ProduceTime: produceTime})
	})
	if err != nil {
		logFailure(ctx, w.producers.failures, "zkafka: PostAck hook failed", err, "topic", w.topic)
	}
}

// Close waits for queued records to be delivered, closes the producer and stops the event
// drain. It waits up to 10 s (closeFlushTimeout), but only up to 1 s
// (closeUnreachableWait) while the producer cannot use its brokers; records still
// undelivered then are dropped (their writes fail) and their number is logged at error
// level. Safe to call more than once and concurrently with writes.
func (w *KWriter) Close() {
	_ = w.close()
}

// close is Close, returning an error that counts the records it dropped.
func (w *KWriter) close() error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		if n := w.producers.flushOrDrop(w.producer); n > 0 {
			w.closeErr = fmt.Errorf("zkafka: closing writer %s for topic %s: dropped %d undelivered records", w.tc.ClientID, w.topic, n)
			w.logger.Errorw(context.Background(), "zkafka: closing writer dropped undelivered records", "topic", w.topic, "client", w.tc.ClientID, "dropped", n)
		}
		w.producer.Close()
		w.producers.stopAll()
		<-w.drained
		close(w.done)
	})
	return w.closeErr
}

// brokerHealth reports whether the producer reaches its brokers and they accept it; if not,
// why (the broker's or librdkafka's words), and since when the state holds.
func (w *KWriter) brokerHealth() (reachable bool, reason string, since time.Time) {
	return w.producers.health.get()
}

// isClosed reports whether Close was called; Client replaces closed writers.
func (w *KWriter) isClosed() bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.closed
}
