package zkafka

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/zkafka-go/zkafka/testhelper"
)

// brokerWriter returns a client on the test broker, closed when the test ends, and a fresh
// single-partition topic.
func brokerClient(t *testing.T, opts ...Option) (addr, topic string, c *Client) {
	t.Helper()
	addr = testBroker(t)
	topic = uniqueName("writer")
	createTopic(t, addr, topic, 1)
	c = NewClient(Config{BootstrapServers: []string{addr}}, opts...)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return addr, topic, c
}

func headersOf(m *kafka.Message) map[string]string {
	out := map[string]string{}
	for _, h := range m.Headers {
		out[h.Key] = string(h.Value)
	}
	return out
}

// TestWriteRawKeysAndHeadersRoundTrip reads back from the broker that a nil key stays nil,
// an empty key stays empty, and keys, values and headers arrive exactly.
func TestWriteRawKeysAndHeadersRoundTrip(t *testing.T) {
	addr, topic, c := brokerClient(t)
	ctx := t.Context()
	w, err := c.Writer(ctx, ProducerTopicConfig{ClientID: "raw", Topic: topic})
	require.NoError(t, err)

	r0, err := w.WriteRaw(ctx, nil, []byte("nil key"))
	require.NoError(t, err)
	r1, err := w.WriteRaw(ctx, ptrOf(""), []byte("empty key"))
	require.NoError(t, err)
	r2, err := w.WriteRaw(ctx, ptrOf("k"), []byte{0, 1, 2}, WithHeaders(map[string]string{"h1": "v1", "h2": ""}))
	require.NoError(t, err)
	r3, err := w.WriteRaw(ctx, ptrOf("novalue"), nil)
	require.NoError(t, err)
	kw := w.(*KWriter)
	r4, err := kw.writeMessage(ctx, nil, []byte("dlt"), []kafka.Header{{Key: "a", Value: []byte("1")}, {Key: "b", Value: nil}})
	require.NoError(t, err)
	require.Equal(t, []int64{0, 1, 2, 3, 4}, []int64{r0.Offset, r1.Offset, r2.Offset, r3.Offset, r4.Offset})

	got := readBack(t, addr, topic, 5, nil)
	require.Nil(t, got[0].Key, "nil key stays nil")
	require.Equal(t, []byte("nil key"), got[0].Value)
	require.Empty(t, got[0].Headers)

	require.NotNil(t, got[1].Key, "empty key stays empty, not nil")
	require.Empty(t, got[1].Key)

	require.Equal(t, []byte("k"), got[2].Key)
	require.Equal(t, []byte{0, 1, 2}, got[2].Value)
	require.Equal(t, map[string]string{"h1": "v1", "h2": ""}, headersOf(got[2]))
	require.Len(t, got[2].Headers, 2)

	require.Nil(t, got[3].Value, "nil value stays nil")

	require.Nil(t, got[4].Key)
	require.Equal(t, []kafka.Header{{Key: "a", Value: []byte("1")}, {Key: "b", Value: nil}}, got[4].Headers)
}

// TestWriteEncodesWithFormatter writes with Write (random UUID key) and WriteKey.
func TestWriteEncodesWithFormatter(t *testing.T) {
	addr, topic, c := brokerClient(t)
	ctx := t.Context()
	w, err := c.Writer(ctx, ProducerTopicConfig{ClientID: "json", Topic: topic})
	require.NoError(t, err)
	type payload struct{ Name string }
	_, err = w.Write(ctx, payload{Name: "a"})
	require.NoError(t, err)
	_, err = w.WriteKey(ctx, "key-b", payload{Name: "b"})
	require.NoError(t, err)
	_, err = w.Write(ctx, func() {})
	require.ErrorContains(t, err, "encoding a func()")

	got := readBack(t, addr, topic, 2, nil)
	_, err = uuid.Parse(string(got[0].Key))
	require.NoError(t, err, "Write keys records with a UUID")
	var p payload
	require.NoError(t, json.Unmarshal(got[0].Value, &p))
	require.Equal(t, "a", p.Name)
	require.Equal(t, []byte("key-b"), got[1].Key)
	require.JSONEq(t, `{"Name":"b"}`, string(got[1].Value))
}

// TestTwoWritersSameClientIDDifferentTopics: each record lands on its own topic only.
func TestTwoWritersSameClientIDDifferentTopics(t *testing.T) {
	addr, topicA, c := brokerClient(t)
	topicB := uniqueName("writer-b")
	createTopic(t, addr, topicB, 1)
	ctx := t.Context()
	wa, err := c.Writer(ctx, ProducerTopicConfig{ClientID: "shared", Topic: topicA})
	require.NoError(t, err)
	wb, err := c.Writer(ctx, ProducerTopicConfig{ClientID: "shared", Topic: topicB})
	require.NoError(t, err)
	require.NotSame(t, wa, wb)

	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			_, err := wa.WriteRaw(ctx, ptrOf("a"), []byte{byte(i)})
			require.NoError(t, err)
		})
		wg.Go(func() {
			_, err := wb.WriteRaw(ctx, ptrOf("b"), []byte{byte(i)})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	for _, m := range readBack(t, addr, topicA, 10, nil) {
		require.Equal(t, []byte("a"), m.Key)
	}
	for _, m := range readBack(t, addr, topicB, 10, nil) {
		require.Equal(t, []byte("b"), m.Key)
	}
}

// TestWriteCancelledContextReturnsPromptly holds the broker's produce response and cancels
// the write's context: the write returns ctx.Err() without waiting for the ack. (Always on
// the embedded broker: it needs to hold a response.)
func TestWriteCancelledContextReturnsPromptly(t *testing.T) {
	cluster := newKfake(t)
	addr := cluster.ListenAddrs()[0]
	topic := uniqueName("cancel")
	createTopic(t, addr, topic, 1)

	arrived := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	cluster.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		once.Do(func() { close(arrived) })
		cluster.SleepControl(func() { <-release })
		return nil, nil, false
	})
	c := NewClient(Config{BootstrapServers: []string{addr}})
	defer func() { require.NoError(t, c.Close()) }()
	defer close(release) // before Close, so the flush completes
	w, err := c.Writer(t.Context(), ProducerTopicConfig{ClientID: "cancel", Topic: topic})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(t.Context())
	errs := make(chan error, 1)
	go func() {
		_, err := w.WriteRaw(ctx, ptrOf("k"), []byte("v"))
		errs <- err
	}()
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("produce request never reached the broker")
	}
	cancel()
	cancelled := time.Now()
	select {
	case err := <-errs:
		require.ErrorIs(t, err, context.Canceled)
		require.Less(t, time.Since(cancelled), time.Second)
	case <-time.After(10 * time.Second):
		t.Fatal("write did not return after its context was cancelled")
	}

	// A context cancelled before the write never reaches the producer.
	_, err = w.WriteRaw(ctx, nil, []byte("never"))
	require.ErrorIs(t, err, context.Canceled)
}

// TestWriteTracing: a producer span per write, its context injected into the headers by the
// propagator, and no headers when propagation is disabled.
func TestWriteTracing(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { require.NoError(t, tp.Shutdown(context.Background())) }()
	addr, topic, c := brokerClient(t, WithClientTracerProviderOption(tp), WithClientTextMapPropagator(propagation.TraceContext{}))

	ctx, parent := tp.Tracer("test").Start(t.Context(), "parent")
	w, err := c.Writer(ctx, ProducerTopicConfig{ClientID: "traced", Topic: topic})
	require.NoError(t, err)
	_, err = w.WriteRaw(ctx, ptrOf("k"), []byte("v"))
	require.NoError(t, err)
	quiet, err := c.Writer(ctx, ProducerTopicConfig{ClientID: "quiet", Topic: topic},
		WithWriterSettings(WriterSettings{DisableTracePropagation: true}))
	require.NoError(t, err)
	_, err = quiet.WriteRaw(ctx, ptrOf("k"), []byte("v"))
	require.NoError(t, err)
	parent.End()

	var publish []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == topic+" publish" {
			publish = append(publish, s)
		}
	}
	require.Len(t, publish, 2, "one span per write")
	span := publish[0]
	require.Equal(t, trace.SpanKindProducer, span.SpanKind())
	require.Equal(t, parent.SpanContext().SpanID(), span.Parent().SpanID())
	attrs := map[string]string{}
	for _, a := range span.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	require.Equal(t, "kafka", attrs["messaging.system"])
	require.Equal(t, topic, attrs["messaging.destination.name"])
	require.Equal(t, "0", attrs["messaging.kafka.offset"])

	got := readBack(t, addr, topic, 2, nil)
	h := headersOf(got[0])
	require.Contains(t, h, "traceparent")
	carried := propagation.TraceContext{}.Extract(context.Background(), msgCarrier{"traceparent": []byte(h["traceparent"])})
	sc := trace.SpanContextFromContext(carried)
	require.Equal(t, span.SpanContext().TraceID(), sc.TraceID())
	require.Equal(t, span.SpanContext().SpanID(), sc.SpanID())
	require.NotContains(t, headersOf(got[1]), "traceparent", "propagation disabled")
}

// TestWriteRecordsFailedSpan: a write that fails records the error on its span.
func TestWriteRecordsFailedSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { require.NoError(t, tp.Shutdown(context.Background())) }()
	fp := newFakeProducerFactory()
	fp.onProduce = func(msg *kafka.Message, delivery chan kafka.Event) {
		ack := *msg
		ack.TopicPartition.Error = kafka.NewError(kafka.ErrMsgSizeTooLarge, "too large", false)
		delivery <- &ack
	}
	c := NewClient(Config{BootstrapServers: []string{"b:1"}}, WithProducerProvider(fp.provider), WithClientTracerProviderOption(tp))
	defer func() { require.NoError(t, c.Close()) }()
	w, err := c.Writer(t.Context(), ProducerTopicConfig{ClientID: "x", Topic: "t"})
	require.NoError(t, err)
	_, err = w.WriteRaw(t.Context(), nil, []byte("v"))
	require.ErrorContains(t, err, "too large")
	spans := rec.Ended()
	require.Len(t, spans, 1)
	require.Equal(t, "Error", spans[0].Status().Code.String())
	require.NotEmpty(t, spans[0].Events(), "error recorded")
}

// TestWriteLifecycleHooks: PreWrite's headers reach the broker, PostAck runs after the ack.
func TestWriteLifecycleHooks(t *testing.T) {
	var mu sync.Mutex
	var acks []LifecyclePostAckMeta
	hooks := LifecycleHooks{
		PreWrite: func(context.Context, LifecyclePreWriteMeta) (LifecyclePreWriteResp, error) {
			return LifecyclePreWriteResp{Headers: map[string][]byte{"pre": []byte("1"), "h": []byte("hook")}}, nil
		},
		PostAck: func(_ context.Context, m LifecyclePostAckMeta) error {
			mu.Lock()
			defer mu.Unlock()
			acks = append(acks, m)
			return nil
		},
	}
	addr, topic, c := brokerClient(t, WithClientLifecycleHooks(hooks))
	w, err := c.Writer(t.Context(), ProducerTopicConfig{ClientID: "hooks", Topic: topic})
	require.NoError(t, err)
	before := time.Now()
	_, err = w.WriteRaw(t.Context(), ptrOf("k"), []byte("v"), WithHeaders(map[string]string{"h": "option", "o": "2"}))
	require.NoError(t, err)

	mu.Lock()
	require.Len(t, acks, 1, "PostAck ran before the write returned")
	require.Equal(t, topic, acks[0].Topic)
	require.False(t, acks[0].ProduceTime.Before(before))
	mu.Unlock()

	got := readBack(t, addr, topic, 1, nil)
	require.Equal(t, map[string]string{"pre": "1", "h": "hook", "o": "2"}, headersOf(got[0]))
}

// TestWriteHookFailuresDoNotStopWrites: an erroring or panicking hook is logged.
func TestWriteHookFailuresDoNotStopWrites(t *testing.T) {
	lg := newCaptureLogger()
	fp := newFakeProducerFactory()
	hooks := LifecycleHooks{
		PreWrite: func(context.Context, LifecyclePreWriteMeta) (LifecyclePreWriteResp, error) {
			panic("pre-write bug")
		},
		PostAck: func(context.Context, LifecyclePostAckMeta) error { return context.DeadlineExceeded },
	}
	c := NewClient(Config{BootstrapServers: []string{"b:1"}}, WithProducerProvider(fp.provider),
		WithClientLifecycleHooks(hooks), LoggerOption(lg))
	defer func() { require.NoError(t, c.Close()) }()
	w, err := c.Writer(t.Context(), ProducerTopicConfig{ClientID: "x", Topic: "t"})
	require.NoError(t, err)
	_, err = w.WriteRaw(t.Context(), nil, []byte("v"))
	require.NoError(t, err)
	lines := lg.all()
	require.Contains(t, lines[len(lines)-2], "PreWrite hook failed")
	require.Contains(t, lines[len(lines)-2], "pre-write bug")
	require.Contains(t, lines[len(lines)-1], "PostAck hook failed")
}

// TestWriterCloseFlushesAndRejectsLaterWrites reads back that a record written just before
// Close is on the broker, and that writes after Close fail.
func TestWriterCloseFlushesAndRejectsLaterWrites(t *testing.T) {
	addr, topic, c := brokerClient(t)
	w, err := c.Writer(t.Context(), ProducerTopicConfig{ClientID: "closing", Topic: topic, LingerMillis: 50})
	require.NoError(t, err)
	_, err = w.WriteRaw(t.Context(), ptrOf("k"), []byte("before close"))
	require.NoError(t, err)
	w.Close()
	w.Close()
	_, err = w.WriteRaw(t.Context(), ptrOf("k"), []byte("after close"))
	require.ErrorIs(t, err, errWriterClosed)
	got := readBack(t, addr, topic, 1, nil)
	require.Equal(t, []byte("before close"), got[0].Value)
}

// TestTransactionalWriter writes in transactions, read back by a read_committed consumer.
func TestTransactionalWriter(t *testing.T) {
	addr, topic, c := brokerClient(t)
	w, err := c.Writer(t.Context(), ProducerTopicConfig{ClientID: uniqueName("tx"), Topic: topic, Transaction: true})
	require.NoError(t, err)
	for i := range 3 {
		_, err := w.WriteRaw(t.Context(), ptrOf("k"), []byte{byte(i)})
		require.NoError(t, err)
	}
	got := readBack(t, addr, topic, 3, kafka.ConfigMap{"isolation.level": "read_committed"})
	for i, m := range got {
		require.Equal(t, []byte{byte(i)}, m.Value)
	}
}

// fatalProducers is a producer provider that keeps every confluent producer it makes, so a
// test can put one into librdkafka's fatal state (Producer.TestFatalError).
type fatalProducers struct {
	mu    sync.Mutex
	made  []*kafka.Producer
	confs []map[string]any
}

func (f *fatalProducers) provider(conf map[string]any) (KafkaProducer, error) {
	cm := toConfigMap(conf)
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.made = append(f.made, p)
	f.confs = append(f.confs, conf)
	return p, nil
}

func (f *fatalProducers) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.made)
}

func (f *fatalProducers) last() *kafka.Producer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.made[len(f.made)-1]
}

// TestWriterReplacesAProducerWithAFatalError puts the writer's producer into librdkafka's
// fatal state, as an idempotent producer gets when the broker reports an out-of-order
// sequence number. The writer makes a new producer with the same configuration and goes on
// writing; without that, every later write (and every dead letter) would fail for good.
func TestWriterReplacesAProducerWithAFatalError(t *testing.T) {
	for _, tx := range []bool{false, true} {
		t.Run(map[bool]string{false: "idempotent", true: "transactional"}[tx], func(t *testing.T) {
			fp := &fatalProducers{}
			logs := newCaptureLogger()
			addr, topic, c := brokerClient(t, WithProducerProvider(fp.provider), LoggerOption(logs))
			w, err := c.Writer(t.Context(), ProducerTopicConfig{ClientID: uniqueName("fatal"), Topic: topic, Transaction: tx})
			require.NoError(t, err)
			_, err = w.WriteRaw(t.Context(), ptrOf("k"), []byte("before"))
			require.NoError(t, err)
			require.Equal(t, 1, fp.count())

			first := fp.last()
			require.Equal(t, kafka.ErrNoError, first.TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "injected by the test"))
			require.Error(t, first.GetFatalError())

			// The producer refuses the record before queueing it: the writer replaces the
			// producer and writes the record with the new one.
			_, err = w.WriteRaw(t.Context(), ptrOf("k"), []byte("after"))
			require.NoError(t, err)
			require.Equal(t, 2, fp.count(), "exactly one new producer")
			require.Equal(t, fp.confs[0], fp.confs[1], "with the same configuration")
			require.NoError(t, fp.last().GetFatalError())
			_, err = w.WriteRaw(t.Context(), ptrOf("k"), []byte("later"))
			require.NoError(t, err)
			require.Equal(t, 2, fp.count())
			replaced := 0
			for _, l := range logs.all() {
				if strings.HasPrefix(l, "error zkafka: producer had a fatal error; replaced it with a new one") {
					replaced++
				}
			}
			require.Equal(t, 1, replaced, "logged once, at error level")

			iso := kafka.ConfigMap{}
			if tx {
				iso["isolation.level"] = "read_committed"
			}
			got := readBack(t, addr, topic, 3, iso)
			require.Equal(t, []string{"before", "after", "later"}, []string{string(got[0].Value), string(got[1].Value), string(got[2].Value)})
		})
	}
}

// TestQueueWhileTheProducerIsReplaced queues records without waiting (the dead letter path,
// queuedRecord.queue) while writes replace the writer's producer after fatal errors: queue
// must read the producer under the writer's lock, as the writes do (the race detector checks).
func TestQueueWhileTheProducerIsReplaced(t *testing.T) {
	fp := &fatalProducers{}
	// The hook widens the time between queue's look at the producer and its hand-over.
	slowHook := WithClientLifecycleHooks(LifecycleHooks{PreWrite: func(context.Context, LifecyclePreWriteMeta) (LifecyclePreWriteResp, error) {
		time.Sleep(200 * time.Microsecond)
		return LifecyclePreWriteResp{}, nil
	}})
	_, topic, c := brokerClient(t, WithProducerProvider(fp.provider), slowHook)
	w, err := c.Writer(t.Context(), ProducerTopicConfig{ClientID: uniqueName("queue-replace"), Topic: topic})
	require.NoError(t, err)
	kw := w.(*KWriter)
	_, err = w.WriteRaw(t.Context(), ptrOf("k"), []byte("before"))
	require.NoError(t, err)

	var queued atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	defer func() { close(stop); <-done }()
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var msg kafka.Message
			q := &queuedRecord{w: kw, ctx: context.Background(), to: ignoredReports{}}
			if q.queue(&msg, []byte("k"), []byte("queued"), nil) {
				queued.Add(1)
			}
		}
	}()
	const replacements = 5
	for i := range replacements {
		require.Equal(t, kafka.ErrNoError, fp.last().TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "injected by the test"))
		_, err = w.WriteRaw(t.Context(), ptrOf("k"), []byte("after"))
		require.NoError(t, err)
		require.Equal(t, i+2, fp.count())
	}
	require.Positive(t, queued.Load(), "records were queued while the producers were replaced")
}

// ignoredReports takes delivery reports and does nothing with them.
type ignoredReports struct{}

func (ignoredReports) delivered(error) {}

// TestWritesDoNotSerialise holds every delivery report until two writes are both waiting:
// a writer-wide lock around the wait would never let the second write reach the producer.
func TestWritesDoNotSerialise(t *testing.T) {
	fp := newFakeProducerFactory()
	var mu sync.Mutex
	var pending []chan kafka.Event
	arrived := make(chan struct{}, 2)
	fp.onProduce = func(msg *kafka.Message, delivery chan kafka.Event) {
		mu.Lock()
		pending = append(pending, delivery)
		mu.Unlock()
		arrived <- struct{}{}
	}
	c := NewClient(Config{BootstrapServers: []string{"b:1"}}, WithProducerProvider(fp.provider))
	defer func() { require.NoError(t, c.Close()) }()
	w, err := c.Writer(t.Context(), ProducerTopicConfig{ClientID: "id", Topic: "a"})
	require.NoError(t, err)

	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := w.WriteRaw(t.Context(), nil, []byte("v"))
			errs <- err
		}()
	}
	<-arrived
	<-arrived
	mu.Lock()
	for i, d := range pending {
		d <- &kafka.Message{TopicPartition: kafka.TopicPartition{Offset: kafka.Offset(i)}}
	}
	mu.Unlock()
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
}

// TestWriteWaitEndsOnClose: a write waiting for a report that never comes returns when the
// writer is closed, and later writes fail clearly.
func TestWriteWaitEndsOnClose(t *testing.T) {
	fp := newFakeProducerFactory()
	arrived := make(chan struct{})
	fp.onProduce = func(*kafka.Message, chan kafka.Event) { close(arrived) }
	c := NewClient(Config{BootstrapServers: []string{"b:1"}}, WithProducerProvider(fp.provider))
	w, err := c.Writer(t.Context(), ProducerTopicConfig{ClientID: "id", Topic: "a"})
	require.NoError(t, err)
	errs := make(chan error, 1)
	go func() {
		_, err := w.WriteRaw(context.Background(), nil, []byte("v"))
		errs <- err
	}()
	<-arrived
	require.NoError(t, c.Close())
	select {
	case err := <-errs:
		require.ErrorIs(t, err, errWriterClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("write still waiting after Close")
	}
	_, err = w.WriteRaw(t.Context(), nil, []byte("v"))
	require.ErrorIs(t, err, errWriterClosed)
	require.EqualError(t, err, "zkafka: writing to topic a: writer is closed")
	w.Close() // twice is fine
}

// TestWriterLosesNoWriteWhenItsFirstBatchIsRefused refuses a new producer's first request to
// a partition that already holds records (NOT_ENOUGH_REPLICAS: not written) and holds it while
// later writes queue up. With more than one request in flight, the next batch reaches the
// broker, which accepts it (it has no state for the producer there), and librdkafka then
// reports the refused writes delivered though they are not in the topic. Every write reported
// delivered must be read back. (Always on the embedded broker: it needs to hold a request.)
func TestWriterLosesNoWriteWhenItsFirstBatchIsRefused(t *testing.T) {
	cluster := newKfake(t)
	addr := cluster.ListenAddrs()[0]
	topic := uniqueName("first-refused")
	createTopic(t, addr, topic, 1)
	testhelper.Produce(t, addr, topic, rec{Value: []byte("earlier")})

	var held sync.Once
	cluster.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		held.Do(func() { cluster.SleepControl(func() { time.Sleep(200 * time.Millisecond) }) })
		return nil, nil, false
	})
	cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.NotEnoughReplicas})

	c := NewClient(Config{BootstrapServers: []string{addr}})
	defer func() { require.NoError(t, c.Close()) }()
	// Small batches, so that more than one is ready while the first is held.
	w, err := c.Writer(t.Context(), ProducerTopicConfig{ClientID: "first-refused", Topic: topic,
		LingerMillis: 5, AdditionalProps: map[string]any{"batch.num.messages": 2}})
	require.NoError(t, err)

	const n = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	delivered := map[string]bool{}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := fmt.Sprintf("w%02d", i)
			if _, err := w.WriteRaw(t.Context(), nil, []byte(v)); err == nil {
				mu.Lock()
				delivered[v] = true
				mu.Unlock()
			}
		}()
		if i%4 == 3 {
			time.Sleep(5 * time.Millisecond) // batches of two, spread over the held request
		}
	}
	wg.Wait()
	require.Len(t, delivered, n, "every write is retried until delivered")

	var read []string
	for _, m := range testhelper.ConsumeTo(t, addr, topic, testhelper.EndOffsets(t, addr, topic), 30*time.Second)[1:] {
		read = append(read, string(m.Value))
	}
	var missing []string
	for v := range delivered {
		if !slices.Contains(read, v) {
			missing = append(missing, v)
		}
	}
	require.Empty(t, missing, "reported delivered but not in the topic")
	require.Len(t, read, n)
}
