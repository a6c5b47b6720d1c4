package zkafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// meters is a MeterProvider of the OpenTelemetry SDK read by hand.
type meters struct {
	provider *sdkmetric.MeterProvider
	reader   *sdkmetric.ManualReader
}

func newMeters(t testing.TB) *meters {
	r := sdkmetric.NewManualReader()
	m := &meters{provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(r)), reader: r}
	t.Cleanup(func() { _ = m.provider.Shutdown(context.Background()) })
	return m
}

// collected is one collection, by instrument name.
type collected map[string]metricdata.Aggregation

func (m *meters) collect(t testing.TB) collected {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, m.reader.Collect(context.Background(), &rm))
	out := collected{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, instrumentationName, sm.Scope.Name)
		for _, mt := range sm.Metrics {
			out[mt.Name] = mt.Data
		}
	}
	return out
}

// has reports whether set holds every one of attrs; one whose value is "" must be absent.
func has(set attribute.Set, attrs []attribute.KeyValue) bool {
	for _, kv := range attrs {
		v, ok := set.Value(kv.Key)
		if kv.Value.AsString() == "" && kv.Value.Type() == attribute.STRING {
			if ok {
				return false
			}
			continue
		}
		if !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// sum adds up the points of a counter whose attributes hold attrs.
func (c collected) sum(t testing.TB, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	data, ok := c[name]
	if !ok {
		return 0
	}
	s, ok := data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is a %T", name, data)
	require.True(t, s.IsMonotonic, name)
	var n int64
	for _, p := range s.DataPoints {
		if has(p.Attributes, attrs) {
			n += p.Value
		}
	}
	return n
}

// count adds up the counts of a histogram's points whose attributes hold attrs.
func (c collected) count(t testing.TB, name string, attrs ...attribute.KeyValue) uint64 {
	t.Helper()
	data, ok := c[name]
	if !ok {
		return 0
	}
	h, ok := data.(metricdata.Histogram[float64])
	require.True(t, ok, "%s is a %T", name, data)
	var n uint64
	for _, p := range h.DataPoints {
		if has(p.Attributes, attrs) {
			n += p.Count
		}
	}
	return n
}

// gauge returns the one point of a gauge whose attributes hold attrs.
func (c collected) gauge(t testing.TB, name string, attrs ...attribute.KeyValue) (int64, bool) {
	t.Helper()
	data, ok := c[name]
	if !ok {
		return 0, false
	}
	g, ok := data.(metricdata.Gauge[int64])
	require.True(t, ok, "%s is a %T", name, data)
	var found []int64
	for _, p := range g.DataPoints {
		if has(p.Attributes, attrs) {
			found = append(found, p.Value)
		}
	}
	require.LessOrEqual(t, len(found), 1, "%s has one point for %v", name, attrs)
	if len(found) == 0 {
		return 0, false
	}
	return found[0], true
}

// age returns the oldest unfinished message's age of the one partition attrs select, -1
// when it is not observed.
func (c collected) age(t testing.TB, attrs ...attribute.KeyValue) float64 {
	t.Helper()
	g, ok := c[metricOldestAge].(metricdata.Gauge[float64])
	if !ok {
		return -1
	}
	for _, p := range g.DataPoints {
		if has(p.Attributes, attrs) {
			return p.Value
		}
	}
	return -1
}

func kv(k, v string) attribute.KeyValue { return attribute.String(k, v) }

func partitionID(p int) attribute.KeyValue {
	return kv("messaging.destination.partition.id", strconv.Itoa(p))
}

func errType(s string) attribute.KeyValue { return kv("error.type", s) }

// TestMetricsOfAKnownRun runs messages with every outcome through a Work whose Client has a
// MeterProvider, and reads the counts back: consumed per partition, one processing time per
// run of the handler with its error.type, retries, dead letters, skipped and abandoned
// messages, the dead letter writer's sends, and the gauges once everything finished.
func TestMetricsOfAKnownRun(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 2)
	dlt := e.newTopic(t, 1)
	// Partition 0: 5 ok, one that fails once and then passes, one permanent failure, one
	// permanent failure without a dead letter. Partition 1: 4 ok, a panic, a stuck handler.
	values := [][]string{
		{"ok", "ok", "flaky", "ok", "bad", "ok", "skip", "ok"},
		{"ok", "panic", "ok", "stuck", "ok", "ok"},
	}
	var recs []rec
	for p, vs := range values {
		for i, v := range vs {
			recs = append(recs, rec{Key: []byte(fmt.Sprintf("k%d-%d", p, i)), Value: []byte(v), Partition: int32(p)})
		}
	}
	e.produce(t, topic, recs)

	m := newMeters(t)
	client := NewClient(Config{BootstrapServers: []string{e.addr}}, WithClientMeterProviderOption(m.provider))
	t.Cleanup(func() { _ = client.Close() })
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic, ProcessTimeoutMillis: intp(100),
		AutoCommitIntervalMs: intp(50)}
	release := make(chan struct{})
	var finished atomic.Int64
	w := NewWorkFactory(client).CreateWithFunc(cfg, func(_ context.Context, msg *Message) error {
		switch string(msg.Value()) {
		case "flaky":
			if msg.Attempt() == 1 {
				return errors.New("dependency down")
			}
		case "bad":
			return PermanentError(errors.New("no customer"))
		case "skip":
			return ProcessError{Err: PermanentError(errors.New("ignore")), DisableDLTWrite: true}
		case "panic":
			panic("bad order")
		case "stuck":
			<-release // ignores its context: abandoned after 100 ms + 100 ms of grace
		}
		return nil
	}, Speedup(2), WithDeadLetterTopic(ProducerTopicConfig{Topic: dlt}),
		WithRetry(RetryPolicy{MaxAttempts: 2, InitialBackoff: 10 * time.Millisecond}),
		WithOnDone(func(context.Context, *Message, error) { finished.Add(1) }))
	r := startWork(t, w)
	require.Eventually(t, func() bool { return w.Status().AbandonedHandlers == 1 }, 30*time.Second, 10*time.Millisecond)
	close(release)
	require.Eventually(t, func() bool { return finished.Load() == 14 }, 30*time.Second, 10*time.Millisecond)

	got := m.collect(t)
	g := kv("messaging.consumer.group.name", group)
	dest := kv("messaging.destination.name", topic)
	kafka := kv("messaging.system", "kafka")
	const consumed = "messaging.client.consumed.messages"
	require.EqualValues(t, 8, got.sum(t, consumed, kafka, kv("messaging.operation.name", "poll"), dest, g, partitionID(0)))
	require.EqualValues(t, 6, got.sum(t, consumed, dest, g, partitionID(1)))
	require.EqualValues(t, 14, got.sum(t, consumed))

	// One processing time per run: 14 messages, one of them run twice.
	const process = "messaging.process.duration"
	require.EqualValues(t, 15, got.count(t, process, kafka, kv("messaging.operation.name", "process"), dest, g))
	require.EqualValues(t, 10, got.count(t, process, dest, g, kv("error.type", "")), "successes have no error.type")
	for typ, n := range map[string]uint64{"transient": 1, "permanent": 2, "panic": 1, "timeout": 1, "decode": 0} {
		require.EqualValues(t, n, got.count(t, process, errType(typ)), typ)
	}

	for _, c := range []struct {
		name   string
		p0, p1 int64
	}{
		{metricRetries, 1, 0},
		{metricDeadLetters, 1, 2},
		{metricSkipped, 1, 0},
		{metricAbandoned, 0, 1},
		{metricDeadLetterRetries, 0, 0},
	} {
		require.Equal(t, c.p0, got.sum(t, c.name, kafka, dest, g, partitionID(0)), c.name)
		require.Equal(t, c.p1, got.sum(t, c.name, kafka, dest, g, partitionID(1)), c.name)
	}
	require.Equal(t, FailureCounts{Retried: 1, Permanent: 3, DeadLettered: 3, Skipped: 1}, w.Status().Failures)

	// The dead letters went through the Client's writer, which records its sends.
	send := []attribute.KeyValue{kafka, kv("messaging.operation.name", "send"), kv("messaging.destination.name", dlt)}
	require.EqualValues(t, 3, got.sum(t, "messaging.client.sent.messages", send...))
	require.EqualValues(t, 3, got.count(t, "messaging.client.operation.duration", append(send, kv("messaging.operation.type", "send"))...))

	work := []attribute.KeyValue{kafka, g, kv("messaging.client.id", cfg.ClientID)}
	for name, want := range map[string]int64{metricInFlightMessages: 0, metricInFlightBytes: 0, metricPausedPartitions: 0, metricBreakerState: 0} {
		v, ok := got.gauge(t, name, work...)
		require.True(t, ok, name)
		require.Equal(t, want, v, name)
	}
	// Everything finished: once committed, no lag and nothing unfinished on either partition.
	require.Eventually(t, func() bool {
		got := m.collect(t)
		for p := range 2 {
			lag, ok := got.gauge(t, metricLag, kafka, dest, g, partitionID(p))
			if !ok || lag != 0 || got.age(t, dest, partitionID(p)) != 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, r.stop(t))
	_, observed := m.collect(t).gauge(t, metricInFlightMessages)
	require.False(t, observed, "a Run that returned observes nothing")
}

// failingWriters is a Client whose first fails writers for topic cannot be had.
type failingWriters struct {
	*Client
	topic string
	fails atomic.Int64
}

func (f *failingWriters) Writer(ctx context.Context, cfg ProducerTopicConfig, opts ...WriterOption) (Writer, error) {
	if cfg.Topic == f.topic && f.fails.Add(-1) >= 0 {
		return nil, errors.New("dead letter topic unavailable")
	}
	return f.Client.Writer(ctx, cfg, opts...)
}

// TestMetricsGauges checks the gauges while a partition is paused behind a stuck handler, and
// while the circuit breaker is open, and the dead letter retries while dead letters cannot be
// written.
func TestMetricsGauges(t *testing.T) {
	e := newEnv(t)
	run := func(t *testing.T, m *meters, cfg ConsumerTopicConfig, f func(context.Context, *Message) error, opts ...WorkOption) *Work {
		w := NewWorkFactory(e.client(t), WithMeterProvider(m.provider)).CreateWithFunc(cfg, f, opts...)
		r := startWork(t, w)
		t.Cleanup(func() { _ = r.stop(t) })
		return w
	}
	config := func(t *testing.T, topic string) ConsumerTopicConfig {
		return ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: uniqueTestName(t, "g"), Topic: topic}
	}
	gauge := func(t *testing.T, m *meters, name string, cfg ConsumerTopicConfig) int64 {
		v, _ := m.collect(t).gauge(t, name, kv("messaging.consumer.group.name", cfg.GroupID), kv("messaging.client.id", cfg.ClientID))
		return v
	}

	t.Run("paused partition", func(t *testing.T) {
		topic := e.newTopic(t, 1)
		e.produce(t, topic, []rec{{Value: []byte("12345")}, {Value: []byte("123")}, {Value: []byte("1")}})
		m := newMeters(t)
		cfg := config(t, topic)
		release := make(chan struct{})
		run(t, m, cfg, func(context.Context, *Message) error { <-release; return nil }, MaxInFlight(2))
		// The first message is stuck, the second queued: the bound is full and, after
		// softWait, the reader pauses the partition.
		require.Eventually(t, func() bool { return gauge(t, m, metricPausedPartitions, cfg) == 1 }, 30*time.Second, 10*time.Millisecond)
		require.EqualValues(t, 2, gauge(t, m, metricInFlightMessages, cfg))
		require.EqualValues(t, 8, gauge(t, m, metricInFlightBytes, cfg))
		// The partition's lag counts from its oldest unfinished message (offset 0), whose
		// age grows while its handler is stuck.
		part := []attribute.KeyValue{kv("messaging.destination.name", topic), kv("messaging.consumer.group.name", cfg.GroupID), partitionID(0)}
		require.Eventually(t, func() bool {
			lag, _ := m.collect(t).gauge(t, metricLag, part...)
			return lag == 3
		}, 30*time.Second, 10*time.Millisecond)
		first := m.collect(t).age(t, part...)
		require.Positive(t, first)
		require.Eventually(t, func() bool { return m.collect(t).age(t, part...) > first }, 30*time.Second, 10*time.Millisecond)
		close(release)
		require.Eventually(t, func() bool {
			got := m.collect(t)
			return got.sum(t, "messaging.client.consumed.messages") == 3 && gauge(t, m, metricInFlightMessages, cfg) == 0
		}, 30*time.Second, 10*time.Millisecond)
		require.Zero(t, gauge(t, m, metricPausedPartitions, cfg))
		require.Eventually(t, func() bool { return m.collect(t).age(t, part...) == 0 }, 30*time.Second, 10*time.Millisecond)
	})

	t.Run("breaker open", func(t *testing.T) {
		topic := e.newTopic(t, 1)
		e.produce(t, topic, keyed(5, 5))
		m := newMeters(t)
		cfg := config(t, topic)
		var runs atomic.Int64
		run(t, m, cfg, func(context.Context, *Message) error { runs.Add(1); return errors.New("down") },
			CircuitBreakAfter(2), CircuitBreakFor(time.Minute))
		require.Eventually(t, func() bool { return gauge(t, m, metricBreakerState, cfg) == 2 }, 30*time.Second, 10*time.Millisecond)
		require.Eventually(t, func() bool { return gauge(t, m, metricPausedPartitions, cfg) == 1 }, 30*time.Second, 10*time.Millisecond)
		require.EqualValues(t, 2, runs.Load(), "no handler starts while the breaker is open")
		require.EqualValues(t, 2, m.collect(t).count(t, "messaging.process.duration", errType("transient")))
	})

	t.Run("dead letter retries", func(t *testing.T) {
		topic := e.newTopic(t, 1)
		dlt := e.newTopic(t, 1)
		e.produce(t, topic, []rec{{Value: []byte("fails")}})
		m := newMeters(t)
		cfg := config(t, topic)
		// The first two attempts to write the dead letter fail: two retries.
		cp := &failingWriters{Client: e.client(t), topic: dlt}
		cp.fails.Store(2)
		var done atomic.Int64
		w := NewWorkFactory(cp, WithMeterProvider(m.provider)).CreateWithFunc(cfg, func(context.Context, *Message) error { return errors.New("boom") },
			WithDeadLetterTopic(ProducerTopicConfig{Topic: dlt}), WithOnDone(func(context.Context, *Message, error) { done.Add(1) }))
		r := startWork(t, w)
		require.Eventually(t, func() bool { return done.Load() == 1 }, 30*time.Second, 10*time.Millisecond)
		require.NoError(t, r.stop(t))
		got := m.collect(t)
		require.EqualValues(t, 2, got.sum(t, metricDeadLetterRetries, kv("messaging.destination.name", topic), partitionID(0)))
		require.EqualValues(t, 1, got.sum(t, metricDeadLetters, kv("messaging.destination.name", topic), partitionID(0)))
	})
}

// TestWriterMetrics: a Client's writer counts its writes and times them, failures under their
// error.type.
func TestWriterMetrics(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	m := newMeters(t)
	client := NewClient(Config{BootstrapServers: []string{e.addr}}, WithClientMeterProviderOption(m.provider))
	t.Cleanup(func() { _ = client.Close() })
	w, err := client.Writer(context.Background(), ProducerTopicConfig{ClientID: uniqueTestName(t, "p"), Topic: topic})
	require.NoError(t, err)
	for range 2 {
		_, err := w.WriteKey(context.Background(), "k", map[string]int{"n": 1})
		require.NoError(t, err)
	}
	w.Close()
	_, err = w.WriteKey(context.Background(), "k", map[string]int{"n": 1})
	require.Error(t, err)

	got := m.collect(t)
	dest := kv("messaging.destination.name", topic)
	require.EqualValues(t, 2, got.sum(t, "messaging.client.sent.messages", dest, kv("error.type", "")))
	require.EqualValues(t, 1, got.sum(t, "messaging.client.sent.messages", dest, errType("closed")))
	require.EqualValues(t, 3, got.count(t, "messaging.client.operation.duration", dest))
}

// TestNoMeterProviderNoMetrics: without a MeterProvider nothing is made.
func TestNoMeterProviderNoMetrics(t *testing.T) {
	require.Nil(t, newWorkMetrics(&runState{w: &Work{}}))
	require.Nil(t, newWriterMetrics(nil, "t", NoopLogger{}))
	var mt *workMetrics // the failure paths take a nil one
	mt.deadLettered(&Message{})
	mt.abandon(&Message{}, time.Second)
	mt.close()
}

func TestErrorTypeOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{errors.New("plain"), "transient"},
		{fmt.Errorf("%w (1s)", errProcessTimeout), "timeout"},
		{fmt.Errorf("%w (1s): %w", errProcessTimeout, PermanentError(errors.New("x"))), "timeout"},
		{&panicError{value: "x"}, "panic"},
		{fmt.Errorf("decode: %w", &decodeError{err: errors.New("bad json")}), "decode"},
		{ProcessError{Err: PermanentError(errors.New("x"))}, "permanent"},
	} {
		require.Equal(t, c.want, errorTypeNames[errorTypeOf(c.err)], "%v", c.err)
	}
	require.Equal(t, "closed", writeErrorType(fmt.Errorf("x: %w", errWriterClosed)))
	require.Equal(t, "timeout", writeErrorType(context.DeadlineExceeded))
	require.Equal(t, "_OTHER", writeErrorType(errors.New("x")))
}

// TestPartitionMetricsLookup: every topic and partition gets its own attribute sets, the same
// ones each time, whatever order the messages come in and whatever the partition id.
func TestPartitionMetricsLookup(t *testing.T) {
	m := newMeters(t)
	mt := newWorkMetrics(&runState{w: &Work{mp: m.provider, logger: NoopLogger{}}, ctx: context.Background(), group: "g"})
	seen := map[tpKey]*partitionMetrics{}
	for range 3 {
		for _, k := range []tpKey{{"a", 0}, {"a", 5}, {"b", 0}, {"a", 0}, {"b", -1}, {"a", maxIndexedPartition + 3}, {"b", 2}} {
			msg := &Message{Topic: k.topic, Partition: k.partition}
			mt.read(msg)
			if prev, ok := seen[k]; ok {
				require.Same(t, prev, msg.metrics, "%v", k)
			}
			seen[k] = msg.metrics
			require.Equal(t, k, tpKey{msg.metrics.topic, msg.metrics.partition})
		}
	}
	mt.flushConsumed(context.Background())
	got := m.collect(t)
	require.EqualValues(t, 6, got.sum(t, "messaging.client.consumed.messages", kv("messaging.destination.name", "a"), partitionID(0)))
	require.EqualValues(t, 3, got.sum(t, "messaging.client.consumed.messages", kv("messaging.destination.name", "b"), partitionID(-1)))
	require.EqualValues(t, 21, got.sum(t, "messaging.client.consumed.messages", kv("messaging.consumer.group.name", "g")))
}
