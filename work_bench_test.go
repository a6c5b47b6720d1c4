package zkafka

// Benchmarks of the hot paths without librdkafka: key routing, commit tracking, and the whole
// per-message path of a Work (poll → message → dispatch → virtual partition → process →
// complete → tracker → store) driven by an in-memory consumer. Run them with `make bench-go`.

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

func BenchmarkRouteKey(b *testing.B) {
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	sum := 0
	for i := 0; b.Loop(); i++ {
		sum += routeKey(keys[i%len(keys)], 64)
	}
	_ = sum
}

// memConsumer is an in-memory KafkaConsumer: one topic of parts partitions holding an endless
// stream of 100-byte messages over 1000 keys. Poll returns the next message, round-robin over
// the partitions; the first Poll assigns every partition through the rebalance callback.
type memConsumer struct {
	KafkaConsumer // unused methods panic
	topic         string
	parts         int32
	keys          [][]byte
	value         []byte
	offsets       []int64
	n             int
	cb            kafka.RebalanceCb
	assigned      bool
	paused        atomic.Bool
	buf           [64]kafka.Message
	stores        atomic.Int64
	commits       atomic.Int64
	pauses        atomic.Int64
}

func newMemConsumer(parts int32) *memConsumer {
	c := &memConsumer{topic: "bench", parts: parts, value: make([]byte, 100), offsets: make([]int64, parts)}
	for i := range 1000 {
		c.keys = append(c.keys, []byte("key-"+strconv.Itoa(i)))
	}
	return c
}

func (c *memConsumer) SubscribeTopics(_ []string, cb kafka.RebalanceCb) error {
	c.cb = cb
	return nil
}

func (c *memConsumer) Poll(timeoutMs int) kafka.Event {
	if c.paused.Load() {
		// Like librdkafka: nothing to return from paused partitions, so Poll waits.
		time.Sleep(time.Duration(timeoutMs) * time.Millisecond)
		return nil
	}
	if !c.assigned {
		c.assigned = true
		var tps []kafka.TopicPartition
		for p := range c.parts {
			tps = append(tps, kafka.TopicPartition{Topic: &c.topic, Partition: p})
		}
		_ = c.cb(nil, kafka.AssignedPartitions{Partitions: tps})
		return nil
	}
	p := int32(c.n) % c.parts
	m := &c.buf[c.n%len(c.buf)]
	*m = kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &c.topic, Partition: p, Offset: kafka.Offset(c.offsets[p])},
		Key:            c.keys[c.n%len(c.keys)],
		Value:          c.value,
		Timestamp:      time.Now(),
	}
	c.offsets[p]++
	c.n++
	return m
}

func (c *memConsumer) StoreOffsets(o []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	c.stores.Add(1)
	return o, nil
}
func (c *memConsumer) CommitOffsets(o []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	c.commits.Add(1)
	return o, nil
}
func (c *memConsumer) Committed(p []kafka.TopicPartition, _ int) ([]kafka.TopicPartition, error) {
	out := append([]kafka.TopicPartition(nil), p...)
	for i := range out {
		out[i].Offset = kafka.OffsetInvalid // nothing committed yet
	}
	return out, nil
}
func (c *memConsumer) Commit() ([]kafka.TopicPartition, error)     { return nil, nil }
func (c *memConsumer) Assign([]kafka.TopicPartition) error         { return nil }
func (c *memConsumer) Unassign() error                             { return nil }
func (c *memConsumer) Pause([]kafka.TopicPartition) error          { return nil }
func (c *memConsumer) Resume([]kafka.TopicPartition) error         { return nil }
func (c *memConsumer) GetRebalanceProtocol() string                { return "EAGER" }
func (c *memConsumer) AssignmentLost() bool                        { return false }
func (c *memConsumer) Close() error                                { return nil }
func (c *memConsumer) Assignment() ([]kafka.TopicPartition, error) { return nil, nil }

// benchWork runs b.N messages through a Work at the given Speedup with a no-op processor and
// reports the per-message cost of everything but librdkafka.
func benchWork(b *testing.B, speedup uint16, opts ...WorkFactoryOption) {
	mc := newMemConsumer(8)
	client := NewClient(Config{BootstrapServers: []string{"mem:9092"}},
		WithConsumerProvider(func(map[string]any) (KafkaConsumer, error) { return mc, nil }))
	defer client.Close()
	var n atomic.Int64
	target := int64(b.N)
	done := make(chan struct{})
	w := NewWorkFactory(client, opts...).CreateWithFunc(ConsumerTopicConfig{ClientID: "bench", GroupID: "bench", Topic: "bench"},
		func(context.Context, *Message) error {
			if n.Add(1) == target {
				close(done)
			}
			return nil
		}, Speedup(speedup))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shutdown := make(chan struct{})
	errc := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	go func() { errc <- w.Run(ctx, shutdown) }()
	<-done
	b.StopTimer()
	// CPU time per message, of the whole process: steadier than ns/op on a busy machine.
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(mc.stores.Load())/float64(b.N), "stores/op")
	b.ReportMetric(float64(mc.pauses.Load()), "pauses")
	b.ReportMetric(float64(mc.commits.Load()), "commits")
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// cpuTime is the CPU time (user and system) the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkWorkNoopS1(b *testing.B)  { benchWork(b, 1) }
func BenchmarkWorkNoopS8(b *testing.B)  { benchWork(b, 8) }
func BenchmarkWorkNoopS64(b *testing.B) { benchWork(b, 64) }

// BenchmarkWorkNoopS8Metrics is BenchmarkWorkNoopS8 with every metric recorded, by the
// OpenTelemetry SDK with a manual reader (issue 14: within 5 % of the run without).
func BenchmarkWorkNoopS8Metrics(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	benchWork(b, 8, WithMeterProvider(mp))
}

// BenchmarkWorkNoopS8MetricsNoHistogram is BenchmarkWorkNoopS8Metrics with the one
// instrument recorded per message, messaging.process.duration, dropped by an SDK View.
func BenchmarkWorkNoopS8MetricsNoHistogram(b *testing.B) {
	drop := sdkmetric.NewView(sdkmetric.Instrument{Name: "messaging.process.duration"},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationDrop{}})
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()), sdkmetric.WithView(drop))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	benchWork(b, 8, WithMeterProvider(mp))
}

// BenchmarkKeyRouter routes 1000 keys over 64 virtual partitions with up to 10 messages of a
// key in flight, letting each go in a random order (the reader's and processors' share).
func BenchmarkKeyRouter(b *testing.B) {
	vps := make([]*virtualPartition, 64)
	for i := range vps {
		vps[i] = newVirtualPartition(i)
	}
	r := newKeyRouter(vps, 10000)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	type inflight struct {
		kr *keyRoute
		vp int
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pending := make([]inflight, 0, 10000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		kr := r.route(keys[i%len(keys)])
		pending = append(pending, inflight{kr, kr.vp})
		if len(pending) == cap(pending) {
			j := rng.IntN(len(pending))
			pending[j].kr.done(vps[pending[j].vp])
			pending[j] = pending[len(pending)-1]
			pending = pending[:len(pending)-1]
		}
	}
}
