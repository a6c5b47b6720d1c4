package zkafka

// What runs around each handler call, in processor.go's process: the OpenTelemetry consumer
// span (a child of the trace in the message's headers) and the PreProcessing and
// PostProcessing hooks. A panic in a hook fails the message; an error is logged.
//
// The processors hold one instrumentation (processors.around) and call its three methods from
// process; it knows nothing else of them, nor they of the span and the hooks' metadata.

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation is the span and hooks of one Run's handler calls.
type instrumentation struct {
	runCtx     context.Context // the Run's context, the parent of a message without its own
	group      string
	failures   *failureLog // the Run's: failing hooks are logged through it
	hooks      LifecycleHooks
	tracer     trace.Tracer // nil: no spans
	propagator propagation.TextMapPropagator
}

// startSpan starts the message's consumer span, a child of the trace its headers carry.
func (in *instrumentation) startSpan(ctx context.Context, m *Message) (context.Context, trace.Span) {
	if in.propagator != nil && len(m.Headers) > 0 {
		ctx = in.propagator.Extract(ctx, msgCarrier(m.Headers))
	}
	ctx, span := in.tracer.Start(ctx, m.Topic+" process", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", m.Topic),
			attribute.String("messaging.consumer.group.name", in.group),
			attribute.Int("messaging.destination.partition.id", int(m.Partition)),
			attribute.Int64("messaging.kafka.offset", m.Offset),
			attribute.String("messaging.kafka.message.key", m.Key),
		))
	// The dead letter and the OnDone callbacks run after the span ended; they link to it
	// through the message's context.
	base := m.ctx
	if base == nil {
		base = in.runCtx
	}
	m.ctx = trace.ContextWithSpanContext(base, span.SpanContext())
	return ctx, span
}

// startBatchSpan starts the consumer span of a batch (batch_processor.go): one span, linked
// to the trace each message's headers carry, with the batch's size. Each message's context
// links to it, for its dead letter and OnDone callbacks.
func (in *instrumentation) startBatchSpan(ctx context.Context, msgs []*Message) (context.Context, trace.Span) {
	first := msgs[0]
	links := make([]trace.Link, 0, len(msgs))
	if in.propagator != nil {
		for _, m := range msgs {
			if len(m.Headers) == 0 {
				continue
			}
			if sc := trace.SpanContextFromContext(in.propagator.Extract(context.Background(), msgCarrier(m.Headers))); sc.IsValid() {
				links = append(links, trace.Link{SpanContext: sc})
			}
		}
	}
	ctx, span := in.tracer.Start(ctx, first.Topic+" process", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", first.Topic),
			attribute.String("messaging.consumer.group.name", in.group),
			attribute.Int("messaging.batch.message_count", len(msgs)),
		))
	for _, m := range msgs {
		base := m.ctx
		if base == nil {
			base = in.runCtx
		}
		m.ctx = trace.ContextWithSpanContext(base, span.SpanContext())
	}
	return ctx, span
}

// preProcessing runs the PreProcessing hook and returns the context it gives. A panic in it
// fails the message.
func (in *instrumentation) preProcessing(ctx context.Context, vp *virtualPartition, m *Message) context.Context {
	h := in.hooks.PreProcessing
	if h == nil {
		return ctx
	}
	next, err := catchCtx(func() (context.Context, error) {
		return h(ctx, LifecyclePreProcessingMeta{Topic: m.Topic, GroupID: in.group, VirtualPartitionIndex: vp.idx, TopicLag: time.Since(m.TimeStamp), Message: m})
	})
	if err != nil {
		logFailure(ctx, in.failures, "zkafka: PreProcessing hook failed", err, "topic", m.Topic)
		if isPanic(err) && m.hookErr == nil {
			m.hookErr = err
		}
	}
	if next != nil {
		return next
	}
	return ctx
}

// postProcessing runs the PostProcessing hook and returns the message's outcome: err, or the
// hook's panic when the handler succeeded.
func (in *instrumentation) postProcessing(ctx context.Context, vp *virtualPartition, m *Message, start time.Time, err error) error {
	h := in.hooks.PostProcessing
	if h == nil {
		return err
	}
	herr := catch("lifecycle hook", func() error {
		return h(ctx, LifecyclePostProcessingMeta{Topic: m.Topic, GroupID: in.group, VirtualPartitionIndex: vp.idx, ProcessingTime: time.Since(start), Msg: m, ResponseErr: err})
	})
	if herr != nil {
		logFailure(ctx, in.failures, "zkafka: PostProcessing hook failed", herr, "topic", m.Topic)
		if isPanic(herr) && err == nil {
			return herr
		}
	}
	return err
}
