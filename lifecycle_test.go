package zkafka

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

type ctxKey string

func TestChainLifecycleHooksThreadsContextAndJoinsErrors(t *testing.T) {
	var order []string
	a := LifecycleHooks{
		PreProcessing: func(ctx context.Context, _ LifecyclePreProcessingMeta) (context.Context, error) {
			order = append(order, "a")
			return context.WithValue(ctx, ctxKey("a"), 1), errors.New("a failed")
		},
		PreWrite: func(context.Context, LifecyclePreWriteMeta) (LifecyclePreWriteResp, error) {
			return LifecyclePreWriteResp{Headers: map[string][]byte{"x": []byte("1")}}, nil
		},
	}
	b := LifecycleHooks{
		PreProcessing: func(ctx context.Context, _ LifecyclePreProcessingMeta) (context.Context, error) {
			order = append(order, "b")
			require.Equal(t, 1, ctx.Value(ctxKey("a")), "b sees the context a returned")
			return context.WithValue(ctx, ctxKey("b"), 2), errors.New("b failed")
		},
		PreWrite: func(context.Context, LifecyclePreWriteMeta) (LifecyclePreWriteResp, error) {
			return LifecyclePreWriteResp{Headers: map[string][]byte{"y": []byte("2")}}, nil
		},
	}
	h := ChainLifecycleHooks(a, LifecycleHooks{}, b)
	ctx, err := h.PreProcessing(context.Background(), LifecyclePreProcessingMeta{})
	require.Equal(t, []string{"a", "b"}, order)
	require.Equal(t, 2, ctx.Value(ctxKey("b")))
	require.EqualError(t, err, "a failed\nb failed")
	resp, err := h.PreWrite(context.Background(), LifecyclePreWriteMeta{})
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"x": []byte("1"), "y": []byte("2")}, resp.Headers)

	// Nil fields never panic.
	empty := ChainLifecycleHooks(LifecycleHooks{}, LifecycleHooks{})
	_, err = empty.PostRead(context.Background(), LifecyclePostReadMeta{})
	require.NoError(t, err)
	empty.PostReadImmediate(context.Background(), LifecyclePostReadImmediateMeta{})
	require.NoError(t, empty.PostProcessing(context.Background(), LifecyclePostProcessingMeta{}))
	require.NoError(t, empty.PostAck(context.Background(), LifecyclePostAckMeta{}))
	empty.PostFanout(context.Background())
	empty.CircuitBreakerStateChanged(context.Background(), LifecycleCircuitBreakerStateChanged{})
}

func TestLifecycleHooksAndProcessingSpans(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)

	// A parent span whose context travels in the message headers.
	parentTP := sdktrace.NewTracerProvider()
	parentCtx, parent := parentTP.Tracer("test").Start(context.Background(), "producer")
	carrier := map[string][]byte{}
	propagation.TraceContext{}.Inject(parentCtx, msgCarrier(carrier))
	parent.End()
	e.produce(t, topic, []rec{
		{Key: []byte("k"), Value: []byte("ok"), Headers: carrier},
		{Key: []byte("k"), Value: []byte("fail")},
	})

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	var mu sync.Mutex
	var events []string
	add := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
	var readWithMsg, readEmpty atomic.Int64
	var pre []LifecyclePreProcessingMeta
	var post []LifecyclePostProcessingMeta
	hooks := LifecycleHooks{
		PostRead: func(ctx context.Context, m LifecyclePostReadMeta) (context.Context, error) {
			add("PostRead " + string(m.Message.Value()))
			return context.WithValue(ctx, ctxKey("read"), string(m.Message.Value())), errors.New("logged, not fatal")
		},
		PostFanout: func(ctx context.Context) { add("PostFanout") },
		PostReadImmediate: func(ctx context.Context, m LifecyclePostReadImmediateMeta) {
			if m.Message != nil {
				readWithMsg.Add(1)
			} else {
				readEmpty.Add(1)
			}
		},
		PreProcessing: func(ctx context.Context, m LifecyclePreProcessingMeta) (context.Context, error) {
			mu.Lock()
			pre = append(pre, m)
			mu.Unlock()
			add("PreProcessing " + string(m.Message.Value()))
			return ctx, nil
		},
		PostProcessing: func(ctx context.Context, m LifecyclePostProcessingMeta) error {
			mu.Lock()
			post = append(post, m)
			mu.Unlock()
			add("PostProcessing " + string(m.Msg.Value()))
			return nil
		},
	}
	group := uniqueTestName(t, "g")
	wf := NewWorkFactory(e.client(t), WithTracerProvider(tp), WithTextMapPropagator(propagation.TraceContext{}), WithWorkLifecycleHooks(hooks))
	done := make(chan struct{}, 2)
	w := wf.CreateWithFunc(ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}, func(ctx context.Context, m *Message) error {
		add("Process " + string(m.Value()))
		require.Equal(t, string(m.Value()), ctx.Value(ctxKey("read")), "the processor's context descends from PostRead's")
		if string(m.Value()) == "fail" {
			return errors.New("processing failed")
		}
		return nil
	}, Speedup(3), WithOnDone(func(context.Context, *Message, error) { done <- struct{}{} }))
	r := startWork(t, w)
	<-done
	<-done
	require.Eventually(t, func() bool { return readEmpty.Load() > 0 }, 30*time.Second, 10*time.Millisecond,
		"PostReadImmediate runs for polls that return nothing too")
	require.NoError(t, r.stop(t))
	require.Equal(t, int64(2), readWithMsg.Load())

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{
		"PostRead ok", "PostFanout", "PostRead fail", "PostFanout",
		"PreProcessing ok", "Process ok", "PostProcessing ok",
		"PreProcessing fail", "Process fail", "PostProcessing fail",
	}, filterReads(events))
	idx := routeKey("k", 3)
	for _, m := range pre {
		require.Equal(t, idx, m.VirtualPartitionIndex)
		require.Equal(t, group, m.GroupID)
		require.GreaterOrEqual(t, m.TopicLag, time.Duration(0))
	}
	require.NoError(t, post[0].ResponseErr)
	require.EqualError(t, post[1].ResponseErr, "processing failed")
	require.Positive(t, post[0].ProcessingTime)

	spans := rec.Ended()
	require.Len(t, spans, 2)
	require.Equal(t, topic+" process", spans[0].Name())
	require.Equal(t, trace.SpanKindConsumer, spans[0].SpanKind())
	require.Equal(t, parent.SpanContext().TraceID(), spans[0].Parent().TraceID(), "the parent comes from the headers")
	require.Equal(t, parent.SpanContext().SpanID(), spans[0].Parent().SpanID())
	require.False(t, spans[1].Parent().IsValid(), "no headers, no parent")
	require.Equal(t, "processing failed", spans[1].Status().Description)
	require.Len(t, spans[1].Events(), 1, "the error is recorded")
}

// filterReads keeps the order of reads and processing but drops interleaving of the reader
// and processors: reads first in read order, then processing in processing order. PostFanout
// runs after every read attempt; only the one right after a message's PostRead is kept.
func filterReads(events []string) []string {
	var reads, procs []string
	afterRead := false
	for _, e := range events {
		switch {
		case len(e) >= 8 && e[:8] == "PostRead":
			reads = append(reads, e)
			afterRead = true
		case e == "PostFanout":
			if afterRead {
				reads = append(reads, e)
			}
			afterRead = false
		default:
			procs = append(procs, e)
		}
	}
	return append(reads, procs...)
}

func TestPanicsInProcessorsAndHooksFailOnlyTheirMessage(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, []rec{
		{Key: []byte("1"), Value: []byte("processor")},
		{Key: []byte("2"), Value: []byte("prehook")},
		{Key: []byte("3"), Value: []byte("ok")},
	})
	group := uniqueTestName(t, "g")
	results := make(chan string, 3)
	logs := newCaptureLogger()
	wf := NewWorkFactory(e.client(t), WithLogger(logs))
	w := wf.CreateWithFunc(ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}, func(ctx context.Context, m *Message) error {
		if string(m.Value()) == "processor" {
			panic("processor boom")
		}
		return nil
	}, WithLifecycleHooks(LifecycleHooks{
		PostFanout: func(context.Context) { panic("fanout boom") }, // logged; fails nothing
		PreProcessing: func(ctx context.Context, m LifecyclePreProcessingMeta) (context.Context, error) {
			if string(m.Message.Value()) == "prehook" {
				panic("hook boom")
			}
			return ctx, nil
		},
	}), WithOnDone(func(_ context.Context, m *Message, err error) {
		if err != nil {
			results <- string(m.Value()) + ": " + err.Error()
		} else {
			results <- string(m.Value()) + ": ok"
		}
	}))
	r := startWork(t, w)
	require.Equal(t, "processor: zkafka: processor panicked: processor boom", <-results)
	require.Equal(t, "prehook: zkafka: lifecycle hook panicked: hook boom", <-results)
	require.Equal(t, "ok: ok", <-results)
	require.NoError(t, r.stop(t))
	require.Equal(t, map[int32]int64{0: 3}, e.committed(t, group, topic))
	var fanoutPanics []string
	for _, line := range logs.containing("PostFanout hook panicked") {
		if strings.Contains(line, "fanout boom") {
			fanoutPanics = append(fanoutPanics, line)
		}
	}
	// A panic in a hook that belongs to no message is logged: PostFanout runs after every read
	// attempt, empty ones too, so the first is written with its stack and the rest summarised.
	require.Len(t, fanoutPanics, 2)
	require.Contains(t, fanoutPanics[0], "runtime/debug.Stack")
	require.NotContains(t, fanoutPanics[0], "repeated")
	require.Contains(t, fanoutPanics[1], "repeated")
}

func TestRunCanBeCalledAgain(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	group := uniqueTestName(t, "g")
	seen := make(chan string, 2)
	wf := NewWorkFactory(e.client(t))
	w := wf.CreateWithFunc(ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}, func(ctx context.Context, m *Message) error {
		seen <- string(m.Value())
		return nil
	})
	for _, v := range []string{"first", "second"} {
		e.produce(t, topic, []rec{{Key: []byte("k"), Value: []byte(v)}})
		r := startWork(t, w)
		require.Equal(t, v, <-seen)
		require.NoError(t, r.stop(t))
	}
	require.Equal(t, map[int32]int64{0: 2}, e.committed(t, group, topic))

	// Configuration errors come back from Run, permanent and clear.
	err := NewWorkFactory(e.client(t)).Create(ConsumerTopicConfig{ClientID: "c", Topic: topic}, nil).Run(context.Background(), nil)
	require.True(t, IsConfigError(err))
	err = wf.CreateWithFunc(ConsumerTopicConfig{ClientID: "c", Topic: topic}, func(context.Context, *Message) error { return nil }).Run(context.Background(), nil)
	require.EqualError(t, err, "zkafka: ConsumerTopicConfig.GroupID is empty")
	require.True(t, IsConfigError(err))
}

// TestMergeLifecycleHooksLeavesUnsetHooksNil: a Work's hooks merged with its factory's keep a
// hook neither sets nil (the engine runs nothing for it), take a hook one sets as it is, and
// chain a hook both set, the factory's first.
func TestMergeLifecycleHooksLeavesUnsetHooksNil(t *testing.T) {
	var calls []string
	factory := LifecycleHooks{
		PostProcessing: func(context.Context, LifecyclePostProcessingMeta) error { calls = append(calls, "factory"); return nil },
	}
	work := LifecycleHooks{
		PostProcessing: func(context.Context, LifecyclePostProcessingMeta) error { calls = append(calls, "work"); return nil },
		PostFanout:     func(context.Context) { calls = append(calls, "fanout") },
	}
	m := mergeLifecycleHooks(LifecycleHooks{}, work)
	require.Nil(t, m.PostRead)
	require.Nil(t, m.PostReadImmediate)
	require.Nil(t, m.PreProcessing)
	require.Nil(t, m.PostAck)
	require.Nil(t, m.PreWrite)
	require.Nil(t, m.CircuitBreakerStateChanged)
	require.Nil(t, m.BrokerStateChanged)
	require.NoError(t, m.PostProcessing(context.Background(), LifecyclePostProcessingMeta{}))
	m.PostFanout(context.Background())
	require.Equal(t, []string{"work", "fanout"}, calls)

	calls = nil
	m = mergeLifecycleHooks(factory, work)
	require.Nil(t, m.PreProcessing)
	require.NoError(t, m.PostProcessing(context.Background(), LifecyclePostProcessingMeta{}))
	m.PostFanout(context.Background())
	require.Equal(t, []string{"factory", "work", "fanout"}, calls)
}
