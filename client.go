package zkafka

// The Client: the one object a user creates per Kafka cluster. It hands out readers
// (reader.go) cached by ClientID and writers (writer.go) cached by ClientID and topic, builds
// their librdkafka configs from Config and the topic configs (config.go), and closes them all
// in Close. WorkFactory (workfactory.go) and the dead letter path (deadletter.go) get their
// readers and writers from it through the ClientProvider interface.

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ClientProvider creates readers and writers; Client is the implementation, FakeClient and
// mocks.MockClientProvider stand in for it in tests.
type ClientProvider interface {
	Reader(ctx context.Context, topicConfig ConsumerTopicConfig, opts ...ReaderOption) (Reader, error)
	Writer(ctx context.Context, topicConfig ProducerTopicConfig, opts ...WriterOption) (Writer, error)
	Close() error
}

var _ ClientProvider = (*Client)(nil)

// Client creates and caches the readers and writers of one Kafka cluster configuration:
// readers by ClientID, writers by ClientID and topic. It is safe for concurrent use. Close it
// when done: that flushes and closes every writer, then closes every reader.
type Client struct {
	conf Config // immutable after NewClient

	// Settings from the options, read by the readers, writers and the Work engine; immutable
	// after NewClient.
	log              Logger
	tp               trace.TracerProvider          // nil: no spans
	mp               metric.MeterProvider          // nil: no metrics
	prop             propagation.TextMapPropagator // nil: no trace context in headers
	groupPrefix      string
	lifecycle        LifecycleHooks
	consumerProvider func(map[string]any) (KafkaConsumer, error)
	producerProvider func(map[string]any) (KafkaProducer, error)

	mu      sync.Mutex
	closed  bool                   // guarded by mu
	readers map[string]*KReader    // guarded by mu
	writers map[writerKey]*KWriter // guarded by mu
	// closing holds readers replaced in readers (a Run made a new consumer, renew.go, or
	// started again) whose close still waits for the group coordinator: Close waits for
	// them too (G14). Guarded by mu.
	closing []*KReader
}

// writerKey identifies a cached writer.
type writerKey struct {
	clientID string
	topic    string
}

// closer is what the cache asks of a reader or writer to know whether to replace it.
type closer interface{ isClosed() bool }

// Option customises a Client.
type Option func(*Client)

// LoggerOption sets the Logger of the client, of its readers and writers, and of the Works
// made from it whose factory has no logger of its own. Default: warnings and errors to stderr
// through log/slog; NoopLogger silences the library.
func LoggerOption(l Logger) Option {
	return func(c *Client) {
		if l != nil {
			c.log = l
		}
	}
}

// WithClientTracerProviderOption sets the tracer provider: writers create a producer span
// per write (default none: no spans).
func WithClientTracerProviderOption(tp trace.TracerProvider) Option {
	return func(c *Client) { c.tp = tp }
}

// WithClientMeterProviderOption sets the meter provider the client's writers record their
// metrics with (messaging.client.sent.messages and messaging.client.operation.duration; the
// docs/operations.md lists every instrument), and that Works created from a factory without
// WithMeterProvider record theirs with. Default none: nothing is recorded, at no cost.
func WithClientMeterProviderOption(mp metric.MeterProvider) Option {
	return func(c *Client) { c.mp = mp }
}

// WithClientTextMapPropagator sets the propagator that writers inject the trace context into
// record headers with (default none: no trace headers).
func WithClientTextMapPropagator(p propagation.TextMapPropagator) Option {
	return func(c *Client) { c.prop = p }
}

// KafkaGroupPrefixOption prefixes every consumer group id (default no prefix), e.g. to keep
// environments sharing a cluster apart.
func KafkaGroupPrefixOption(prefix string) Option {
	return func(c *Client) { c.groupPrefix = prefix }
}

// WithClientLifecycleHooks sets hooks the client's readers and writers call (default none).
func WithClientLifecycleHooks(h LifecycleHooks) Option {
	return func(c *Client) { c.lifecycle = h }
}

// WithConsumerProvider replaces how consumers are created (default confluent-kafka-go's
// kafka.NewConsumer); the function receives the librdkafka configuration. For tests.
func WithConsumerProvider(p func(map[string]any) (KafkaConsumer, error)) Option {
	return func(c *Client) { c.consumerProvider = p }
}

// WithProducerProvider replaces how producers are created (default confluent-kafka-go's
// kafka.NewProducer); the function receives the librdkafka configuration. For tests. A Writer
// calls it again to replace a producer in a fatal state, which it recognises only when the
// producer has confluent's GetFatalError() error method.
func WithProducerProvider(p func(map[string]any) (KafkaProducer, error)) Option {
	return func(c *Client) { c.producerProvider = p }
}

// NewClient returns a Client for conf. Nothing connects until the first Reader or Writer.
func NewClient(conf Config, opts ...Option) *Client {
	c := &Client{
		conf:             conf,
		log:              stderrLogger,
		consumerProvider: defaultConsumerProvider,
		producerProvider: defaultProducerProvider,
		readers:          map[string]*KReader{},
		writers:          map[writerKey]*KWriter{},
	}
	for _, opt := range opts {
		if opt != nil {
			opt(c)
		}
	}
	if c.consumerProvider == nil {
		c.consumerProvider = defaultConsumerProvider
	}
	if c.producerProvider == nil {
		c.producerProvider = defaultProducerProvider
	}
	return c
}

// defaultConsumerProvider creates a confluent-kafka-go consumer.
func defaultConsumerProvider(conf map[string]any) (KafkaConsumer, error) {
	cm := toConfigMap(conf)
	kc, err := kafka.NewConsumer(&cm)
	if err != nil {
		return nil, err
	}
	return kc, nil
}

// errClientClosed is returned by Reader and Writer after Close.
var errClientClosed = errors.New("zkafka: client is closed")

// Reader returns the reader for topicConfig.ClientID, creating it when there is none or the
// cached one is closed. The options apply only when the reader is created. It returns a
// configuration error (IsConfigError) for an invalid topicConfig.
func (c *Client) Reader(ctx context.Context, topicConfig ConsumerTopicConfig, opts ...ReaderOption) (Reader, error) {
	if testHookTopicConfig != nil {
		topicConfig = testHookTopicConfig(topicConfig)
	}
	if err := validateConsumer(c.conf, topicConfig); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClientClosed
	}
	if r, ok := c.readers[topicConfig.ClientID]; ok {
		if !isClosed(r) {
			return r, nil
		}
		c.closing = slices.DeleteFunc(c.closing, (*KReader).closeEnded)
		if !r.closeEnded() {
			c.closing = append(c.closing, r)
		}
	}
	f, err := getFormatter(topicConfig.Formatter, topicConfig.SchemaID, topicConfig.SchemaRegistry)
	if err != nil {
		return nil, err
	}
	if f == nil && readerSettings(opts).formatter == nil {
		return nil, errConfig("formatter %s needs RFormatterOption", string(CustomFmt))
	}
	r, err := newReader(readerArgs{
		conf:        c.conf,
		tc:          topicConfig,
		groupPrefix: c.groupPrefix,
		fmt:         f,
		logger:      c.log,
		hooks:       c.lifecycle,
		provider:    c.consumerProvider,
		opts:        opts,
	})
	if err != nil {
		return nil, err
	}
	c.log.Debugw(ctx, "zkafka: created reader", "config", topicConfig)
	c.readers[topicConfig.ClientID] = r
	return r, nil
}

// Writer returns the writer for topicConfig's ClientID and Topic, creating it when there is
// none or the cached one is closed. The options apply only when the writer is created. It
// returns a configuration error (IsConfigError) for an invalid topicConfig.
func (c *Client) Writer(ctx context.Context, topicConfig ProducerTopicConfig, opts ...WriterOption) (Writer, error) {
	if err := validateProducer(c.conf, topicConfig); err != nil {
		return nil, err
	}
	key := writerKey{clientID: topicConfig.ClientID, topic: topicConfig.Topic}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClientClosed
	}
	if w, ok := c.writers[key]; ok && !w.isClosed() {
		return w, nil
	}
	f, err := getFormatter(topicConfig.Formatter, topicConfig.SchemaID, topicConfig.SchemaRegistry)
	if err != nil {
		return nil, err
	}
	w, err := newWriter(ctx, writerArgs{
		conf:     c.conf,
		tc:       topicConfig,
		fmt:      f,
		logger:   c.log,
		tp:       c.tp,
		mp:       c.mp,
		p:        c.prop,
		hooks:    c.lifecycle,
		provider: c.producerProvider,
		opts:     opts,
	})
	if err != nil {
		return nil, err
	}
	c.log.Debugw(ctx, "zkafka: created writer", "config", topicConfig)
	c.writers[key] = w
	return w, nil
}

// isClosed reports whether a cached reader or writer knows itself to be closed; one that
// cannot tell is taken to be open.
func isClosed(v any) bool {
	cl, ok := v.(closer)
	return ok && cl.isClosed()
}

// Close flushes and closes every writer (concurrently, each for up to 10 s, or 1 s while its
// brokers cannot be used, dropping what is left: see KWriter.Close), then closes
// every reader (concurrently, each for up to 5 s: see KReader.Close), and joins their errors.
// Reader and Writer fail after Close. Safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	writers, readers := c.writers, slices.AppendSeq(c.closing, maps.Values(c.readers))
	c.writers, c.readers, c.closing = map[writerKey]*KWriter{}, map[string]*KReader{}, nil
	c.mu.Unlock()

	// Writers flush concurrently, so the wait is that of the slowest, not their sum.
	var (
		wg   sync.WaitGroup
		emu  sync.Mutex
		errs []error
	)
	for _, w := range writers {
		wg.Go(func() {
			if err := w.close(); err != nil {
				emu.Lock()
				errs = append(errs, err) // it names the writer
				emu.Unlock()
			}
		})
	}
	wg.Wait()
	// Readers too. Each Close waits at most closeMaxWait for a commit the group coordinator
	// does not answer; then Client.Close waits, up to clientCloseMaxWait, for the consumer's
	// close to end, so that no consumer outlives it (G14) while the coordinator comes back.
	for _, r := range readers {
		wg.Go(func() {
			err := r.Close()
			if !r.awaitClosed(clientCloseMaxWait) {
				stage := r.closeStage()
				c.log.Errorw(context.Background(), "zkafka: a consumer is still closing: "+stage.wait()+"; not waiting for it",
					"client_id", r.tc.ClientID, "group", r.groupID, "stage", stage.String(), "waited", clientCloseMaxWait.String(),
					"rebalance_callbacks_in_close", r.callbacksInClose.Load())
			}
			if err != nil {
				emu.Lock()
				errs = append(errs, err) // it names the consumer
				emu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// logger is the client's Logger (never nil).
func (c *Client) logger() Logger { return c.log }

// tracerProvider is the client's tracer provider; nil when none was set.
func (c *Client) tracerProvider() trace.TracerProvider { return c.tp }

// meterProvider is the client's meter provider; nil when none was set.
func (c *Client) meterProvider() metric.MeterProvider { return c.mp }

// propagator is the client's propagator; nil when none was set.
func (c *Client) propagator() propagation.TextMapPropagator { return c.prop }
