package zkafka

// Lifecycle hooks: the callbacks a user attaches to points of a message's life (read, fanned
// out, processed, written, acknowledged) and to the circuit breaker, their meta structs, and
// ChainLifecycleHooks. The engine calls them from readloop.go, instrument.go and work.go, the
// writer from writer.go; panics in them are recovered in panics.go.

import (
	"context"
	"errors"
	"time"
)

// LifecyclePostReadMeta is passed to LifecycleHooks.PostRead.
type LifecyclePostReadMeta struct {
	Topic   string
	GroupID string
	// Message that was read (never nil).
	Message *Message
}

// LifecyclePostReadImmediateMeta is passed to LifecycleHooks.PostReadImmediate.
type LifecyclePostReadImmediateMeta struct {
	// Message that was read; nil when the read returned nothing or failed.
	Message *Message
	// Err is the read error, if any.
	Err error
}

// LifecyclePreProcessingMeta is passed to LifecycleHooks.PreProcessing.
type LifecyclePreProcessingMeta struct {
	Topic   string
	GroupID string
	// VirtualPartitionIndex is the virtual partition that processes the message.
	VirtualPartitionIndex int
	// TopicLag is the time between the record's timestamp and the start of processing.
	TopicLag time.Duration
	// Message about to be processed.
	Message *Message
}

// LifecyclePostProcessingMeta is passed to LifecycleHooks.PostProcessing.
type LifecyclePostProcessingMeta struct {
	Topic   string
	GroupID string
	// VirtualPartitionIndex is the virtual partition that processed the message.
	VirtualPartitionIndex int
	// ProcessingTime is how long the processor ran.
	ProcessingTime time.Duration
	// Msg is the processed message.
	Msg *Message
	// ResponseErr is what the processor returned (or the panic/timeout error).
	ResponseErr error
}

// LifecyclePostAckMeta is passed to LifecycleHooks.PostAck after the broker acknowledged a write.
type LifecyclePostAckMeta struct {
	Topic string
	// ProduceTime is when the write was handed to the producer.
	ProduceTime time.Time
}

// LifecyclePreWriteMeta is passed to LifecycleHooks.PreWrite.
type LifecyclePreWriteMeta struct{}

// LifecyclePreWriteResp is what LifecycleHooks.PreWrite returns: headers added to the record.
type LifecyclePreWriteResp struct {
	Headers map[string][]byte
}

// CircuitBreakerState is the state of a Work's circuit breaker. The values are zkafka v2's.
type CircuitBreakerState int

const (
	// CircuitBreakerStateOpen lets nothing through until CircuitBreakFor has passed.
	CircuitBreakerStateOpen CircuitBreakerState = 1
	// CircuitBreakerStateHalfOpen lets one probe message through.
	CircuitBreakerStateHalfOpen CircuitBreakerState = 2
	// CircuitBreakerStateClosed lets every message through (the normal state).
	CircuitBreakerStateClosed CircuitBreakerState = 3
)

// String returns "closed", "half-open" or "open".
func (s CircuitBreakerState) String() string {
	switch s {
	case CircuitBreakerStateClosed:
		return "closed"
	case CircuitBreakerStateHalfOpen:
		return "half-open"
	case CircuitBreakerStateOpen:
		return "open"
	default:
		return "unknown"
	}
}

// LifecycleCircuitBreakerStateChanged is passed to LifecycleHooks.CircuitBreakerStateChanged.
type LifecycleCircuitBreakerStateChanged struct {
	Topic   string
	GroupID string
	From    CircuitBreakerState
	To      CircuitBreakerState
}

// LifecycleBrokerStateChanged is passed to LifecycleHooks.BrokerStateChanged.
type LifecycleBrokerStateChanged struct {
	// Topic is the Work's or reader's topics (comma separated), or the writer's topic.
	Topic string
	// GroupID is the consumer group; "" for a writer.
	GroupID string
	// ClientID is the consumer's or producer's ClientID.
	ClientID string
	// Reachable is false when no broker can be reached or the brokers refuse the client
	// (authentication, authorisation), true when it can use them again.
	Reachable bool
	// Reason is the broker's or librdkafka's words for why not (e.g. "1/1 brokers are down",
	// "SASL authentication error: ..."); "" when Reachable.
	Reason string
	// Since is when the new state began.
	Since time.Time
}

// LifecycleHooks are callbacks at points of a message's life. Every field is optional. A
// hook's error is logged and never stops processing; a panicking hook is recovered and counts
// as a failure of that message.
//
// Hooks run concurrently and must be safe for that: PostRead, PostReadImmediate and
// PostFanout run on the reader goroutine, PreProcessing and PostProcessing on the goroutine of
// the message's virtual partition (up to Speedup of them at once, one per virtual partition),
// PreWrite and PostAck on whatever goroutine writes, and CircuitBreakerStateChanged on the
// goroutine that moved the breaker (a processor, or the reader when it finds the open period
// over).
type LifecycleHooks struct {
	// PostRead runs after a message is read, on the reader goroutine; the returned context
	// becomes the processor's parent context.
	PostRead func(ctx context.Context, meta LifecyclePostReadMeta) (context.Context, error)
	// PostReadImmediate runs after every read attempt, with or without a message.
	PostReadImmediate func(ctx context.Context, meta LifecyclePostReadImmediateMeta)
	// PreProcessing runs just before the processor; the returned context is passed to it.
	PreProcessing func(ctx context.Context, meta LifecyclePreProcessingMeta) (context.Context, error)
	// PostProcessing runs after the processor returned.
	PostProcessing func(ctx context.Context, meta LifecyclePostProcessingMeta) error
	// PostAck runs after the broker acknowledged a write.
	PostAck func(ctx context.Context, meta LifecyclePostAckMeta) error
	// PreWrite runs before a write; the headers it returns are added to the record.
	PreWrite func(ctx context.Context, meta LifecyclePreWriteMeta) (LifecyclePreWriteResp, error)
	// PostFanout runs after every read attempt, as in zkafka v2: after a message was handed
	// to its virtual partition (with the message's context), and after an empty read, a
	// failed read, or a wait for room or for an open circuit breaker.
	PostFanout func(ctx context.Context)
	// CircuitBreakerStateChanged runs on every transition of the circuit breaker.
	CircuitBreakerStateChanged func(ctx context.Context, meta LifecycleCircuitBreakerStateChanged)
	// BrokerStateChanged runs when a consumer or producer finds it can no longer reach any
	// broker or is refused by them (Reachable false; the same moment the library logs it at
	// error level), and when it can use them again (Reachable true). The library keeps
	// trying meanwhile; an application that would rather exit (and let its supervisor
	// restart it, or alert) can stop its Work from here. A Work runs its own hooks for its
	// consumer; a Client's hooks run for its writers and for readers used outside a Work.
	// It runs on the reader goroutine, a writer's event goroutine or the consumer's probe
	// goroutine, once per transition and never concurrently for one consumer or producer;
	// it must not block for long.
	BrokerStateChanged func(ctx context.Context, meta LifecycleBrokerStateChanged)
}

// ChainLifecycleHooks combines hooks: each field calls the non-nil fields of every argument in
// order, threading the returned context from one to the next and joining their errors.
func ChainLifecycleHooks(hooks ...LifecycleHooks) LifecycleHooks {
	if len(hooks) == 1 {
		return hooks[0]
	}
	return LifecycleHooks{
		PostRead: chainCtx(hooks, func(h LifecycleHooks) func(context.Context, LifecyclePostReadMeta) (context.Context, error) {
			return h.PostRead
		}),
		PostReadImmediate: chainVoid(hooks, func(h LifecycleHooks) func(context.Context, LifecyclePostReadImmediateMeta) {
			return h.PostReadImmediate
		}),
		PreProcessing: chainCtx(hooks, func(h LifecycleHooks) func(context.Context, LifecyclePreProcessingMeta) (context.Context, error) {
			return h.PreProcessing
		}),
		PostProcessing: chainErr(hooks, func(h LifecycleHooks) func(context.Context, LifecyclePostProcessingMeta) error {
			return h.PostProcessing
		}),
		PostAck: chainErr(hooks, func(h LifecycleHooks) func(context.Context, LifecyclePostAckMeta) error {
			return h.PostAck
		}),
		PreWrite: chainPreWrite(hooks),
		PostFanout: func(ctx context.Context) {
			for _, h := range hooks {
				if h.PostFanout != nil {
					h.PostFanout(ctx)
				}
			}
		},
		CircuitBreakerStateChanged: chainVoid(hooks, func(h LifecycleHooks) func(context.Context, LifecycleCircuitBreakerStateChanged) {
			return h.CircuitBreakerStateChanged
		}),
		BrokerStateChanged: chainVoid(hooks, func(h LifecycleHooks) func(context.Context, LifecycleBrokerStateChanged) {
			return h.BrokerStateChanged
		}),
	}
}

// brokerHook makes a brokerListener that runs h for the client named by topic, group and
// clientID; a panic in h is recovered and logged through failures.
func brokerHook(h func(context.Context, LifecycleBrokerStateChanged), failures *failureLog, topic, group, clientID string) brokerListener {
	return func(reachable bool, reason string, since time.Time) {
		ctx := context.Background()
		err := catch("lifecycle hook", func() error {
			h(ctx, LifecycleBrokerStateChanged{Topic: topic, GroupID: group, ClientID: clientID, Reachable: reachable, Reason: reason, Since: since})
			return nil
		})
		if err != nil {
			logFailure(ctx, failures, "zkafka: BrokerStateChanged hook failed", err, "topic", topic)
		}
	}
}

// mergeLifecycleHooks is ChainLifecycleHooks(a, b) for a Work's own hooks, except that a hook
// neither sets stays nil and a hook only one sets is that one's: the engine runs nothing where
// no hook is set (a chain of none was a call and a closure for every message, and a
// PreProcessing or PostProcessing hook, even an empty chain, keeps a handler's end from being
// the next one's start: processors.chain).
func mergeLifecycleHooks(a, b LifecycleHooks) LifecycleHooks {
	c := ChainLifecycleHooks(a, b)
	c.PostRead = either(a.PostRead == nil, b.PostRead == nil, a.PostRead, b.PostRead, c.PostRead)
	c.PostReadImmediate = either(a.PostReadImmediate == nil, b.PostReadImmediate == nil, a.PostReadImmediate, b.PostReadImmediate, c.PostReadImmediate)
	c.PreProcessing = either(a.PreProcessing == nil, b.PreProcessing == nil, a.PreProcessing, b.PreProcessing, c.PreProcessing)
	c.PostProcessing = either(a.PostProcessing == nil, b.PostProcessing == nil, a.PostProcessing, b.PostProcessing, c.PostProcessing)
	c.PostAck = either(a.PostAck == nil, b.PostAck == nil, a.PostAck, b.PostAck, c.PostAck)
	c.PreWrite = either(a.PreWrite == nil, b.PreWrite == nil, a.PreWrite, b.PreWrite, c.PreWrite)
	c.PostFanout = either(a.PostFanout == nil, b.PostFanout == nil, a.PostFanout, b.PostFanout, c.PostFanout)
	c.CircuitBreakerStateChanged = either(a.CircuitBreakerStateChanged == nil, b.CircuitBreakerStateChanged == nil,
		a.CircuitBreakerStateChanged, b.CircuitBreakerStateChanged, c.CircuitBreakerStateChanged)
	c.BrokerStateChanged = either(a.BrokerStateChanged == nil, b.BrokerStateChanged == nil, a.BrokerStateChanged, b.BrokerStateChanged, c.BrokerStateChanged)
	return c
}

// either is b when a is unset (aNil), a when b is (bNil), else both: the two chained.
func either[F any](aNil, bNil bool, a, b, both F) F {
	switch {
	case aNil:
		return b
	case bNil:
		return a
	}
	return both
}

// chainCtx chains the context-returning hook that field picks out of each of hooks.
func chainCtx[M any](hooks []LifecycleHooks, field func(LifecycleHooks) func(context.Context, M) (context.Context, error)) func(context.Context, M) (context.Context, error) {
	return func(ctx context.Context, meta M) (context.Context, error) {
		var errs []error
		for _, h := range hooks {
			f := field(h)
			if f == nil {
				continue
			}
			next, err := f(ctx, meta)
			if next != nil {
				ctx = next
			}
			errs = append(errs, err)
		}
		return ctx, errors.Join(errs...)
	}
}

// chainErr chains the error-returning hook that field picks out of each of hooks.
func chainErr[M any](hooks []LifecycleHooks, field func(LifecycleHooks) func(context.Context, M) error) func(context.Context, M) error {
	return func(ctx context.Context, meta M) error {
		var errs []error
		for _, h := range hooks {
			if f := field(h); f != nil {
				errs = append(errs, f(ctx, meta))
			}
		}
		return errors.Join(errs...)
	}
}

// chainVoid chains the hook that returns nothing that field picks out of each of hooks.
func chainVoid[M any](hooks []LifecycleHooks, field func(LifecycleHooks) func(context.Context, M)) func(context.Context, M) {
	return func(ctx context.Context, meta M) {
		for _, h := range hooks {
			if f := field(h); f != nil {
				f(ctx, meta)
			}
		}
	}
}

// chainPreWrite chains the PreWrite hooks, merging their headers (a later hook wins).
func chainPreWrite(hooks []LifecycleHooks) func(context.Context, LifecyclePreWriteMeta) (LifecyclePreWriteResp, error) {
	return func(ctx context.Context, meta LifecyclePreWriteMeta) (LifecyclePreWriteResp, error) {
		var errs []error
		out := LifecyclePreWriteResp{Headers: map[string][]byte{}}
		for _, h := range hooks {
			if h.PreWrite == nil {
				continue
			}
			resp, err := h.PreWrite(ctx, meta)
			errs = append(errs, err)
			for k, v := range resp.Headers {
				out.Headers[k] = v
			}
		}
		return out, errors.Join(errs...)
	}
}
