package zkafka

// WorkFactory and the Work options: the factory holds the defaults every Work it creates
// shares (client, logger, tracer and meter providers, propagator, hooks), and each WorkOption sets one
// knob of a Work with its default documented. Defaults live in newWork. work.go runs the Work.

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// processor is what a Work runs for every message.
type processor interface {
	Process(ctx context.Context, msg *Message) error
}

// processorFunc adapts a function to processor.
type processorFunc func(ctx context.Context, msg *Message) error

func (f processorFunc) Process(ctx context.Context, msg *Message) error { return f(ctx, msg) }

// WorkFactory creates Works that share a client and the defaults set by its options (logger,
// tracer and meter providers, propagator, lifecycle hooks).
type WorkFactory struct {
	cp         ClientProvider
	logger     Logger
	tp         trace.TracerProvider
	mp         metric.MeterProvider
	propagator propagation.TextMapPropagator
	hooks      LifecycleHooks
}

// WorkFactoryOption customises a WorkFactory.
type WorkFactoryOption interface {
	apply(*WorkFactory)
}

type factoryOptionFunc func(*WorkFactory)

func (f factoryOptionFunc) apply(wf *WorkFactory) { f(wf) }

// WithLogger sets the logger every Work of the factory writes to. Default: the Client's
// (LoggerOption), which is warnings and errors to stderr unless set; NoopLogger silences it.
func WithLogger(l Logger) WorkFactoryOption {
	return factoryOptionFunc(func(wf *WorkFactory) {
		if l != nil {
			wf.logger = l
		}
	})
}

// WithTracerProvider sets the tracer provider for processing spans (default none: no spans).
func WithTracerProvider(tp trace.TracerProvider) WorkFactoryOption {
	return factoryOptionFunc(func(wf *WorkFactory) { wf.tp = tp })
}

// WithMeterProvider sets the meter provider every Work of the factory records its metrics
// with: messages consumed and processing time after the OpenTelemetry messaging semantic
// conventions, and zkafka's own instruments (in flight, paused partitions, the circuit
// breaker, retries, dead letters, abandoned handlers, skipped messages; docs/operations.md
// lists them all). Default: the Client's (WithClientMeterProviderOption), else none: nothing is
// recorded, at no cost.
func WithMeterProvider(mp metric.MeterProvider) WorkFactoryOption {
	return factoryOptionFunc(func(wf *WorkFactory) { wf.mp = mp })
}

// WithTextMapPropagator sets the propagator that extracts a message's parent span from its
// headers and injects trace context into dead letters (default none).
func WithTextMapPropagator(p propagation.TextMapPropagator) WorkFactoryOption {
	return factoryOptionFunc(func(wf *WorkFactory) { wf.propagator = p })
}

// WithWorkLifecycleHooks sets lifecycle hooks every Work of the factory runs, before any hooks
// given to the Work itself (default none).
func WithWorkLifecycleHooks(h LifecycleHooks) WorkFactoryOption {
	return factoryOptionFunc(func(wf *WorkFactory) { wf.hooks = h })
}

// NewWorkFactory returns a factory of Works reading through cp.
func NewWorkFactory(cp ClientProvider, opts ...WorkFactoryOption) WorkFactory {
	wf := WorkFactory{cp: cp, logger: stderrLogger}
	for _, o := range opts {
		if o != nil {
			o.apply(&wf)
		}
	}
	return wf
}

// Create returns a Work that runs p for every message of the topics of cfg. Configuration
// errors (including a nil p) are returned by Run.
func (f WorkFactory) Create(cfg ConsumerTopicConfig, p interface {
	Process(ctx context.Context, msg *Message) error
}, opts ...WorkOption) *Work {
	w := newWork(f, cfg, opts)
	if p != nil {
		w.processor = p
	}
	return w
}

// CreateWithFunc is Create with a function as the processor.
func (f WorkFactory) CreateWithFunc(cfg ConsumerTopicConfig, p func(ctx context.Context, msg *Message) error, opts ...WorkOption) *Work {
	w := newWork(f, cfg, opts)
	if p != nil {
		w.processor = processorFunc(p)
	}
	return w
}

// newWork builds a Work with the factory's defaults, then the options; every default of a
// Work is set here.
func newWork(f WorkFactory, cfg ConsumerTopicConfig, opts []WorkOption) *Work {
	if testHookTopicConfig != nil {
		cfg = testHookTopicConfig(cfg)
	}
	w := &Work{
		cp:          f.cp,
		topicConfig: cfg,
		logger:      f.logger,
		tp:          f.tp,
		mp:          f.mp,
		propagator:  f.propagator,
		lifecycle:   f.hooks,
		speedup:     1,
		cbAfter:     defaultCircuitBreakAfter,
		cbFor:       defaultCircuitBreakFor,
		maxBytes:    defaultMaxInFlightBytes,
		stuckAfter:  defaultStuckAfter,
		poisonAfter: defaultPoisonPillAfter,
	}
	if w.logger == nil {
		w.logger = stderrLogger
	}
	for _, o := range opts {
		if o != nil {
			o.apply(w)
		}
	}
	if w.maxInFlight == 0 {
		w.maxInFlight = defaultInFlight(w.speedup)
	}
	if w.retry != nil {
		p := w.retry.withDefaults()
		w.retry = &p
	}
	if w.batchPolicy != nil {
		p := w.batchPolicy.withDefaults()
		w.batchPolicy = &p
	}
	if cfg.DeadLetterTopicConfig != nil && w.dlt == nil {
		d := *cfg.DeadLetterTopicConfig
		w.dlt = &d
	}
	return w
}

// Defaults of the work options.
const (
	defaultCircuitBreakAfter = 5
	defaultCircuitBreakFor   = 30 * time.Second
	// defaultMaxInFlight is the least default bound of the messages read but not finished,
	// across virtual partitions.
	defaultMaxInFlight = 10000
	// inFlightPerVP is the default bound's share per virtual partition, where that is more
	// than defaultMaxInFlight (Speedup above 125).
	inFlightPerVP = 80
	// maxDefaultInFlight caps the default bound (reached at Speedup 1250): every message in
	// flight costs about 700 bytes of Go heap besides its payload, which MaxInFlightBytes does
	// not count, so this keeps that overhead under about 70 MB.
	maxDefaultInFlight = 100000
	// defaultMaxInFlightBytes bounds the payload bytes read but not finished.
	defaultMaxInFlightBytes = 256 << 20
	// defaultStuckAfter is how long a partition's position may stand still, with messages
	// unfinished, before Work.Status calls it stuck.
	defaultStuckAfter = 10 * time.Second
)

// WorkOption customises one Work.
type WorkOption interface {
	apply(*Work)
}

type workOptionFunc func(*Work)

func (f workOptionFunc) apply(w *Work) { f(w) }

// Speedup sets the number of virtual partitions: messages are spread over n processors by key
// (equal keys always to the same one, in order). Default 1; 0 means 1.
func Speedup(n uint16) WorkOption {
	return workOptionFunc(func(w *Work) { w.speedup = max(n, 1) })
}

// HashRouting routes every keyed message to virtual partition hash(key) mod Speedup (hash:
// 32-bit FNV-1a of the key bytes, then murmur3's fmix32 finalizer),
// always, so a key's virtual partition (LifecyclePreProcessingMeta.VirtualPartitionIndex)
// never changes. The default routing prefers that same partition but, for a key with nothing
// in flight, takes a virtual partition with fewer keys in flight when there is one, which
// keeps every virtual partition busy when few keys are hot. Both keep the messages of a key
// in order, one at a time (G2).
func HashRouting() WorkOption {
	return workOptionFunc(func(w *Work) { w.hashRouting = true })
}

// CircuitBreakAfter sets how many consecutive failures open the circuit breaker (default 5).
func CircuitBreakAfter(n uint32) WorkOption {
	return workOptionFunc(func(w *Work) { w.cbAfter = max(n, 1) })
}

// CircuitBreakFor sets how long the circuit breaker stays open before a probe (default 30 s).
func CircuitBreakFor(d time.Duration) WorkOption {
	return workOptionFunc(func(w *Work) {
		if d > 0 {
			w.cbFor = d
		}
	})
}

// DisableCircuitBreaker turns the circuit breaker off (default on).
func DisableCircuitBreaker() WorkOption {
	return WithDisableCircuitBreaker(true)
}

// WithDisableCircuitBreaker turns the circuit breaker off when disabled is true (default on).
func WithDisableCircuitBreaker(disabled bool) WorkOption {
	return workOptionFunc(func(w *Work) { w.cbDisabled = disabled })
}

// DisableBusyLoopBreaker keeps processors waiting for an open circuit breaker on a short
// re-check interval instead of sleeping until the breaker's open period ends (default: sleep).
// Neither way spins the reader: partitions are paused while the breaker is open.
func DisableBusyLoopBreaker() WorkOption {
	return WithDisableBusyLoopBreaker(true)
}

// WithDisableBusyLoopBreaker is DisableBusyLoopBreaker when disabled is true.
func WithDisableBusyLoopBreaker(disabled bool) WorkOption {
	return workOptionFunc(func(w *Work) { w.blbDisabled = disabled })
}

// WithOnDone registers a callback run once per message with its final error (nil on success),
// after the dead letter outcome is known. Callbacks run in registration order, on the
// goroutine of the message's virtual partition, or for a dead-lettered message on the dead
// letter writer's event goroutine where its acknowledgement arrives: keep them short (a
// callback that blocks there delays the other dead letters' acknowledgements). Default none.
func WithOnDone(f func(ctx context.Context, msg *Message, err error)) WorkOption {
	return workOptionFunc(func(w *Work) {
		if f != nil {
			w.onDone = append(w.onDone, f)
		}
	})
}

// WithLifecycleHooks adds hooks for this Work, run after the factory's (default none).
func WithLifecycleHooks(h LifecycleHooks) WorkOption {
	return workOptionFunc(func(w *Work) { w.lifecycle = mergeLifecycleHooks(w.lifecycle, h) })
}

// WithDeadLetterTopic sets where failed messages are written; it takes precedence over
// ConsumerTopicConfig.DeadLetterTopicConfig (default none: failures are logged and skipped).
func WithDeadLetterTopic(cfg ProducerTopicConfig) WorkOption {
	return workOptionFunc(func(w *Work) { w.dlt = &cfg })
}

// WithWorkTextMapPropagator sets the propagator of this Work (default: the factory's).
func WithWorkTextMapPropagator(p propagation.TextMapPropagator) WorkOption {
	return workOptionFunc(func(w *Work) { w.propagator = p })
}

// defaultInFlight is the in-flight bound of a Work with speedup virtual partitions and no
// MaxInFlight option. The window of messages in flight must hold enough distinct keys to keep
// every virtual partition busy, and librdkafka hands out one Kafka partition's fetched batch
// at a time, so a small window holds the keys of only one or two partitions: at high Speedup a
// larger window comes closer to the ideal rate (docs/performance.md).
func defaultInFlight(speedup uint16) int {
	return min(max(defaultMaxInFlight, inFlightPerVP*int(speedup)), maxDefaultInFlight)
}

// MaxInFlight bounds the messages read but not yet finished, over all virtual partitions
// (default 10,000, or 80 per virtual partition when that is more, up to 100,000: 20,480 for
// Speedup(256)). At the bound the reader waits up to 100 ms for a tenth of it to free up,
// then pauses its partitions and keeps polling, so the group membership holds however slow
// the processor is; it resumes at half the bound.
func MaxInFlight(n int) WorkOption {
	return workOptionFunc(func(w *Work) {
		if n > 0 {
			w.maxInFlight = n
		}
	})
}

// MaxInFlightBytes bounds the payload bytes read but not yet finished (default 256 MiB),
// like MaxInFlight.
func MaxInFlightBytes(n int64) WorkOption {
	return workOptionFunc(func(w *Work) {
		if n > 0 {
			w.maxBytes = n
		}
	})
}

// StuckAfter sets how long a partition's position may stand still, while messages of it are
// read and unfinished, before Work.Status (and the StatusHandler page) reports the partition
// stuck: its oldest unfinished message has been the oldest that long (default 10 s). Raise it
// for handlers that take longer than that by design. A consumer that has not been a member of
// its group that long, while its broker is reachable, is logged too.
func StuckAfter(d time.Duration) WorkOption {
	return workOptionFunc(func(w *Work) {
		if d > 0 {
			w.stuckAfter = d
		}
	})
}
