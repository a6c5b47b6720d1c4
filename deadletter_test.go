package zkafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/zkafka-go/zkafka/testhelper"
)

// zkafkaHeaders are the seven headers every dead letter carries besides the original's own.
var zkafkaHeaders = []string{
	HeaderOriginalTopic, HeaderOriginalPartition, HeaderOriginalOffset, HeaderOriginalTimestamp,
	HeaderOriginalGroup, HeaderError, HeaderAttempt,
}

// tpo names one record: topic, partition, offset.
type tpo struct {
	topic     string
	partition int32
	offset    int64
}

func (e *testEnv) consumeFrom(t testing.TB, topic string, n int) map[tpo]testhelper.Consumed {
	t.Helper()
	out := map[tpo]testhelper.Consumed{}
	for _, c := range e.consumeAll(t, topic, n) {
		out[tpo{c.Topic, c.Partition, c.Offset}] = c
	}
	return out
}

// originalOf returns the source coordinates a dead letter names in its headers.
func originalOf(t testing.TB, dl testhelper.Consumed) tpo {
	t.Helper()
	var p int32
	var o int64
	_, err := fmt.Sscan(string(dl.Headers[HeaderOriginalPartition]), &p)
	require.NoError(t, err)
	_, err = fmt.Sscan(string(dl.Headers[HeaderOriginalOffset]), &o)
	require.NoError(t, err)
	return tpo{string(dl.Headers[HeaderOriginalTopic]), p, o}
}

// requireOriginalHeaders checks that every header of the source record is on the dead letter,
// byte for byte (an empty value included).
func requireOriginalHeaders(t testing.TB, src, dl testhelper.Consumed) {
	t.Helper()
	for k, v := range src.Headers {
		got, ok := dl.Headers[k]
		require.True(t, ok, "header %q of %s/%d/%d is on its dead letter", k, src.Topic, src.Partition, src.Offset)
		require.True(t, bytes.Equal(v, got), "header %q: %q, want %q", k, got, v)
	}
}

// requireAllCommitted checks that the group committed every non-empty partition to its end.
func requireAllCommitted(t testing.TB, e *testEnv, group, topic string) {
	t.Helper()
	committed := e.committed(t, group, topic)
	for p, end := range e.endOffsets(t, topic) {
		if end > 0 {
			require.Equal(t, end, committed[p], "partition %d committed to its end", p)
		}
	}
}

// recordingProvider is a Client that remembers the configurations writers were asked for and
// can wrap the writers it hands out.
type recordingProvider struct {
	*Client
	mu      sync.Mutex
	writers []ProducerTopicConfig
	wrap    func(Writer) Writer
}

func (p *recordingProvider) Writer(ctx context.Context, cfg ProducerTopicConfig, opts ...WriterOption) (Writer, error) {
	p.mu.Lock()
	p.writers = append(p.writers, cfg)
	p.mu.Unlock()
	w, err := p.Client.Writer(ctx, cfg, opts...)
	if err != nil || p.wrap == nil {
		return w, err
	}
	return p.wrap(w), nil
}

func (p *recordingProvider) writerConfigs() []ProducerTopicConfig {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ProducerTopicConfig(nil), p.writers...)
}

// withDLTChannels adds the dead letter producer's channel sizes (deadLetterChannelSizes) to props.
func withDLTChannels(props map[string]any) map[string]any {
	for k, v := range deadLetterChannelSizes {
		props[k] = v
	}
	return props
}

func TestG5DeadLetterConfigInheritsFromTheConsumer(t *testing.T) {
	user, pass, other := "u", "p", "other"
	big := withDLTChannels(map[string]any{"message.max.bytes": deadLetterMaxMessageBytes, "linger.ms": deadLetterLingerMs})
	consumer := ConsumerTopicConfig{ClientID: "consumer", GroupID: "g", Topic: "src",
		BootstrapServers: []string{"b1:9092"}, SaslUsername: &user, SaslPassword: &pass}
	for _, tc := range []struct {
		name string
		dlt  ProducerTopicConfig
		want ProducerTopicConfig
	}{
		{"all unset", ProducerTopicConfig{Topic: "dlt"},
			ProducerTopicConfig{Topic: "dlt", ClientID: "consumer", BootstrapServers: []string{"b1:9092"}, SaslUsername: &user, SaslPassword: &pass, AdditionalProps: big}},
		{"own client id", ProducerTopicConfig{Topic: "dlt", ClientID: "mine"},
			ProducerTopicConfig{Topic: "dlt", ClientID: "mine", BootstrapServers: []string{"b1:9092"}, SaslUsername: &user, SaslPassword: &pass, AdditionalProps: big}},
		{"own bootstrap", ProducerTopicConfig{Topic: "dlt", BootstrapServers: []string{"b2:9092"}},
			ProducerTopicConfig{Topic: "dlt", ClientID: "consumer", BootstrapServers: []string{"b2:9092"}, SaslUsername: &user, SaslPassword: &pass, AdditionalProps: big}},
		{"own credentials are not mixed with the consumer's", ProducerTopicConfig{Topic: "dlt", SaslUsername: &other},
			ProducerTopicConfig{Topic: "dlt", ClientID: "consumer", BootstrapServers: []string{"b1:9092"}, SaslUsername: &other, AdditionalProps: big}},
		{"own message.max.bytes is kept", ProducerTopicConfig{Topic: "dlt", AdditionalProps: map[string]any{"message.max.bytes": 1 << 20, "acks": "1"}},
			ProducerTopicConfig{Topic: "dlt", ClientID: "consumer", BootstrapServers: []string{"b1:9092"}, SaslUsername: &user, SaslPassword: &pass,
				AdditionalProps: withDLTChannels(map[string]any{"message.max.bytes": 1 << 20, "acks": "1", "linger.ms": deadLetterLingerMs})}},
		{"own linger is kept", ProducerTopicConfig{Topic: "dlt", LingerMillis: 1},
			ProducerTopicConfig{Topic: "dlt", ClientID: "consumer", BootstrapServers: []string{"b1:9092"}, SaslUsername: &user, SaslPassword: &pass, LingerMillis: 1,
				AdditionalProps: withDLTChannels(map[string]any{"message.max.bytes": deadLetterMaxMessageBytes})}},
		{"other props keep company with the raised limit", ProducerTopicConfig{Topic: "dlt", AdditionalProps: map[string]any{"acks": "1"}},
			ProducerTopicConfig{Topic: "dlt", ClientID: "consumer", BootstrapServers: []string{"b1:9092"}, SaslUsername: &user, SaslPassword: &pass,
				AdditionalProps: withDLTChannels(map[string]any{"message.max.bytes": deadLetterMaxMessageBytes, "acks": "1", "linger.ms": deadLetterLingerMs})}},
		{"own channel size is kept", ProducerTopicConfig{Topic: "dlt", AdditionalProps: map[string]any{"go.events.channel.size": 7}},
			ProducerTopicConfig{Topic: "dlt", ClientID: "consumer", BootstrapServers: []string{"b1:9092"}, SaslUsername: &user, SaslPassword: &pass,
				AdditionalProps: map[string]any{"message.max.bytes": deadLetterMaxMessageBytes, "linger.ms": deadLetterLingerMs, "go.events.channel.size": 7, "go.produce.channel.size": 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, deadLetterConfig(consumer, tc.dlt))
		})
	}
}

func TestG5DeadLetterProducerInheritsTheConsumersConnectionProps(t *testing.T) {
	consumer := ConsumerTopicConfig{ClientID: "consumer", GroupID: "g", Topic: "src", AdditionalProps: map[string]any{
		"security.protocol":        "SSL",
		"ssl.ca.location":          "/etc/ca.pem",
		"ssl.certificate.pem":      "CERT",
		"sasl.mechanisms":          "PLAIN",
		"broker.address.family":    "v4",
		"client.dns.lookup":        "use_all_dns_ips",
		"fetch.min.bytes":          1,        // a consumer key: stays with the consumer
		"auto.offset.reset":        "latest", // likewise
		"enable.auto.offset.store": false,
	}}
	for _, tc := range []struct {
		name string
		own  map[string]any
		want map[string]any
	}{
		{"nothing of its own", nil, withDLTChannels(map[string]any{
			"security.protocol": "SSL", "ssl.ca.location": "/etc/ca.pem", "ssl.certificate.pem": "CERT",
			"sasl.mechanisms": "PLAIN", "broker.address.family": "v4", "client.dns.lookup": "use_all_dns_ips",
			"message.max.bytes": deadLetterMaxMessageBytes, "linger.ms": deadLetterLingerMs})},
		{"its own keys win", map[string]any{"ssl.ca.location": "/etc/other-ca.pem", "security.protocol": "SASL_SSL", "acks": "1"}, withDLTChannels(map[string]any{
			"security.protocol": "SASL_SSL", "ssl.ca.location": "/etc/other-ca.pem", "ssl.certificate.pem": "CERT",
			"sasl.mechanisms": "PLAIN", "broker.address.family": "v4", "client.dns.lookup": "use_all_dns_ips",
			"acks": "1", "message.max.bytes": deadLetterMaxMessageBytes, "linger.ms": deadLetterLingerMs})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			own := map[string]any{}
			for k, v := range tc.own {
				own[k] = v
			}
			got := deadLetterConfig(consumer, ProducerTopicConfig{Topic: "dlt", AdditionalProps: own})
			require.Equal(t, tc.want, got.AdditionalProps)
			require.Equal(t, len(tc.own), len(own), "the caller's map is not written to")
			require.Len(t, consumer.AdditionalProps, 9, "nor the consumer's")
		})
	}
	t.Run("its own credentials keep the consumer's sasl keys out", func(t *testing.T) {
		user, pass := "dlt-user", "dlt-pass"
		got := deadLetterConfig(consumer, ProducerTopicConfig{Topic: "dlt", SaslUsername: &user, SaslPassword: &pass})
		require.Equal(t, withDLTChannels(map[string]any{
			"security.protocol": "SSL", "ssl.ca.location": "/etc/ca.pem", "ssl.certificate.pem": "CERT",
			"broker.address.family": "v4", "client.dns.lookup": "use_all_dns_ips",
			"message.max.bytes": deadLetterMaxMessageBytes, "linger.ms": deadLetterLingerMs}), got.AdditionalProps)
		require.Equal(t, &user, got.SaslUsername)
	})
}

func TestG5DeadLetterHeadersAndPayload(t *testing.T) {
	for _, via := range []string{"WithDeadLetterTopic", "DeadLetterTopicConfig"} {
		t.Run(via, func(t *testing.T) { testG5DeadLetterHeadersAndPayload(t, via) })
	}
}

func testG5DeadLetterHeadersAndPayload(t *testing.T, via string) {
	e := newEnv(t)
	topic := e.newTopic(t, 2)
	dlt := e.newTopic(t, 1)
	const n = 100
	recs := make([]rec, n)
	for i := range recs {
		r := rec{Value: []byte(fmt.Sprintf("v%d", i)), Partition: int32(i % 2)} // offset i/2
		switch i % 40 {
		case 0: // partition 0, offsets 0, 20, 40: failing, nil key
		case 21: // partition 1, offsets 10, 30: failing, empty key
			r.Key = []byte{}
		default:
			r.Key = []byte(fmt.Sprintf("k%d", i%7))
		}
		if i%3 == 0 {
			r.Headers = map[string][]byte{"h": []byte(fmt.Sprint(i)), "odd": {0, 0xff, 0x80, '\n', '"'}, "empty": {}}
		}
		if i == 60 { // partition 0 offset 30: failing, null value
			r.Value = nil
		}
		recs[i] = r
	}
	e.produce(t, topic, recs)
	src := e.consumeFrom(t, topic, n)

	group := uniqueTestName(t, "g")
	clientID := uniqueTestName(t, "c")
	cfg := ConsumerTopicConfig{ClientID: clientID, GroupID: group, Topic: topic}
	var opts []WorkOption
	if via == "WithDeadLetterTopic" {
		// The option wins over the config.
		cfg.DeadLetterTopicConfig = &ProducerTopicConfig{Topic: "not-this-one"}
		opts = append(opts, WithDeadLetterTopic(ProducerTopicConfig{Topic: dlt}))
	} else {
		cfg.DeadLetterTopicConfig = &ProducerTopicConfig{Topic: dlt}
	}
	var mu sync.Mutex
	final := map[tpo][]error{}
	var doneCount atomic.Int64
	opts = append(opts, Speedup(4), WithOnDone(func(ctx context.Context, m *Message, err error) {
		mu.Lock()
		k := tpo{m.Topic, m.Partition, m.Offset}
		final[k] = append(final[k], err)
		mu.Unlock()
		doneCount.Add(1)
	}))
	cp := &recordingProvider{Client: e.client(t)}
	w := NewWorkFactory(cp).CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		switch m.Offset % 10 {
		case 0:
			return fmt.Errorf("boom at %d/%d", m.Partition, m.Offset)
		case 5:
			return ProcessError{Err: errors.New("dropped"), DisableDLTWrite: true}
		}
		return nil
	}, opts...)
	r := startWork(t, w)
	require.Eventually(t, func() bool { return doneCount.Load() >= n }, 60*time.Second, 5*time.Millisecond)
	require.NoError(t, r.stop(t))
	require.Equal(t, e.endOffsets(t, topic), e.committed(t, group, topic), "every message finished and committed")

	// OnDone saw each message once, with its final error.
	mu.Lock()
	require.Len(t, final, n)
	for k, errs := range final {
		require.Len(t, errs, 1, "%v finished once", k)
		switch k.offset % 10 {
		case 0:
			require.EqualError(t, errs[0], fmt.Sprintf("boom at %d/%d", k.partition, k.offset))
		case 5:
			var pe ProcessError
			require.ErrorAs(t, errs[0], &pe)
			require.True(t, pe.DisableDLTWrite)
		default:
			require.NoError(t, errs[0])
		}
	}
	mu.Unlock()

	// The dead letter writer was asked for with the consumer's ClientID.
	var dltWriters []ProducerTopicConfig
	for _, c := range cp.writerConfigs() {
		if c.Topic == dlt {
			dltWriters = append(dltWriters, c)
		}
	}
	require.NotEmpty(t, dltWriters)
	for _, c := range dltWriters {
		require.Equal(t, clientID, c.ClientID, "an unset dead letter ClientID inherits the consumer's")
	}

	// Exactly the ten offset%10==0 messages are on the dead letter topic, and nothing more.
	require.Equal(t, map[int32]int64{0: 10}, e.endOffsets(t, dlt))
	dls := e.consumeAll(t, dlt, 10)
	seen := map[tpo]bool{}
	for _, dl := range dls {
		o := originalOf(t, dl)
		require.False(t, seen[o], "one dead letter per failed message")
		seen[o] = true
		require.Equal(t, int64(0), o.offset%10, "only plain failures are dead-lettered: %v", o)
		s, ok := src[o]
		require.True(t, ok, "%v is a source record", o)
		require.Equal(t, s.Key == nil, dl.Key == nil, "a nil key stays nil, an empty key stays empty (%v)", o)
		require.Equal(t, s.Key, dl.Key)
		require.Equal(t, s.Value == nil, dl.Value == nil, "a null value stays null (%v)", o)
		require.Equal(t, s.Value, dl.Value)
		requireOriginalHeaders(t, s, dl)
		for _, h := range zkafkaHeaders {
			require.Contains(t, dl.Headers, h)
		}
		require.Equal(t, topic, string(dl.Headers[HeaderOriginalTopic]))
		require.Equal(t, fmt.Sprint(s.Partition), string(dl.Headers[HeaderOriginalPartition]))
		require.Equal(t, fmt.Sprint(s.Offset), string(dl.Headers[HeaderOriginalOffset]))
		ts, err := time.Parse(time.RFC3339Nano, string(dl.Headers[HeaderOriginalTimestamp]))
		require.NoError(t, err)
		require.True(t, ts.Equal(s.Timestamp), "original timestamp %s, want %s", ts, s.Timestamp)
		require.Equal(t, group, string(dl.Headers[HeaderOriginalGroup]))
		require.Equal(t, fmt.Sprintf("boom at %d/%d", s.Partition, s.Offset), string(dl.Headers[HeaderError]))
		require.Equal(t, "1", string(dl.Headers[HeaderAttempt]))
		require.Len(t, dl.Headers, len(s.Headers)+len(zkafkaHeaders), "no other headers")
	}
	require.Len(t, seen, 10)
}

// dltProduceFault makes every produce to topic fail with err until removed.
func dltProduceFault(e *testEnv, topic string, err *kerr.Error) *kfake.FaultHandle {
	return e.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: err, Count: -1})
}

// keyNotOn returns a key that routes to a different virtual partition than key.
func keyNotOn(key string, speedup int) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("other%d", i)
		if routeKey(k, speedup) != routeKey(key, speedup) {
			return k
		}
	}
}

func TestG5DeadLetterOutageHoldsTheOffset(t *testing.T) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 2)
	dlt := e.newTopic(t, 1)
	const perPartition, k = 10, 3
	other := keyNotOn("a", 4)
	var recs []rec
	for i := 0; i < perPartition; i++ {
		recs = append(recs, rec{Key: []byte("a"), Value: []byte(fmt.Sprint(i)), Partition: 0})
	}
	for i := 0; i < perPartition; i++ {
		recs = append(recs, rec{Key: []byte(other), Value: []byte(fmt.Sprint(i)), Partition: 1})
	}
	e.produce(t, topic, recs)
	fault := dltProduceFault(e, dlt, kerr.TopicAuthorizationFailed)

	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic, AutoCommitIntervalMs: intp(100),
		DeadLetterTopicConfig: &ProducerTopicConfig{Topic: dlt}}
	var finished atomic.Int64
	w := NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		if m.Partition == 0 && m.Offset == k {
			return errors.New("boom")
		}
		return nil
	}, Speedup(4), WithOnDone(func(context.Context, *Message, error) { finished.Add(1) }))
	r := startWork(t, w)

	// Partition 1 is on another virtual partition: it finishes and is committed.
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[1] == perPartition }, 30*time.Second, 20*time.Millisecond)
	// The dead letter write has been refused and retried a few times.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, fault.Wait(ctx, 3))
	// Several auto-commit intervals later, partition 0 has not moved past the failed message.
	// (The processor does not wait for a dead letter's acknowledgement, so messages after it
	// may have finished while the first attempt was out; once the write fails, its virtual
	// partition takes no new message.)
	stalledAt := finished.Load()
	time.Sleep(5 * 100 * time.Millisecond)
	require.Equal(t, int64(k), e.committed(t, group, topic)[0], "the offset waits at the unwritten dead letter")
	require.GreaterOrEqual(t, stalledAt, int64(perPartition+k))
	require.Equal(t, stalledAt, finished.Load(), "nothing more of its virtual partition finished while the dead letter failed")
	require.Equal(t, map[int32]int64{0: 0}, e.endOffsets(t, dlt))

	// The outage ends: the dead letter is written and the offset moves to the end.
	fault.Remove()
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == perPartition }, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, r.stop(t))
	dls := e.consumeAll(t, dlt, 1)
	require.Equal(t, tpo{topic, 0, k}, originalOf(t, dls[0]))
	require.Equal(t, map[int32]int64{0: 1}, e.endOffsets(t, dlt), "written once")
	require.Equal(t, e.endOffsets(t, topic), e.committed(t, group, topic))
}

func TestG5DeadLetterOutageOutlivesGracefulShutdown(t *testing.T) {
	// A non-retriable error fails each attempt at once; with a retriable one the producer
	// retries by itself and the attempt in flight is what the stop has to cut short.
	t.Run("non-retriable", func(t *testing.T) { testG5OutageOutlivesShutdown(t, kerr.TopicAuthorizationFailed) })
	t.Run("retriable", func(t *testing.T) { testG5OutageOutlivesShutdown(t, kerr.NotEnoughReplicas) })
}

func testG5OutageOutlivesShutdown(t *testing.T, faultErr *kerr.Error) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 1)
	dlt := e.newTopic(t, 1)
	const n, k = 5, 2
	var recs []rec
	for i := 0; i < n; i++ {
		recs = append(recs, rec{Key: []byte("a"), Value: []byte(fmt.Sprint(i))})
	}
	e.produce(t, topic, recs)
	fault := dltProduceFault(e, dlt, faultErr)

	group := uniqueTestName(t, "g")
	// A short delivery timeout lets the Client's closing flush give up on the stuck record
	// soon after the test ends.
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic, AutoCommitIntervalMs: intp(100),
		DeadLetterTopicConfig: &ProducerTopicConfig{Topic: dlt, DeliveryTimeoutMs: intp(3000)}}
	var mu sync.Mutex
	var offsets []int64
	wf := NewWorkFactory(e.client(t))
	mk := func() *Work {
		return wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
			mu.Lock()
			offsets = append(offsets, m.Offset)
			mu.Unlock()
			if m.Offset == k {
				return errors.New("boom")
			}
			return nil
		})
	}
	r := startWork(t, mk())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, fault.Wait(ctx, 2), "the dead letter write is refused and retried")
	t0 := time.Now()
	require.NoError(t, r.stop(t), "a graceful stop during an outage is not an error")
	took := time.Since(t0)
	t.Logf("graceful stop during the outage took %s", took)
	require.Less(t, took, deadLetterStopGrace+2*time.Second, "and it is prompt")
	require.Equal(t, map[int32]int64{0: k}, e.committed(t, group, topic), "the failed message stays uncommitted")
	require.Equal(t, map[int32]int64{0: 0}, e.endOffsets(t, dlt))

	// The next worker, with the outage over, gets the message again and dead-letters it.
	fault.Remove()
	mu.Lock()
	offsets = nil
	mu.Unlock()
	r2 := startWork(t, mk())
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == n }, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, r2.stop(t))
	mu.Lock()
	require.Equal(t, int64(k), offsets[0], "redelivered from the failed message on")
	mu.Unlock()
	// With a retriable error the record the stop gave up on is still in the producer's queue
	// and may be delivered once the outage ends: a duplicate, never a loss.
	written := e.endOffsets(t, dlt)[0]
	if faultErr.Retriable {
		require.True(t, written == 1 || written == 2, "%d dead letters", written)
	} else {
		require.Equal(t, int64(1), written)
	}
	for _, dl := range e.consumeAll(t, dlt, int(written)) {
		require.Equal(t, tpo{topic, 0, k}, originalOf(t, dl))
	}
}

func TestG5DeadLetterWritesDoNotSerialise(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	dlt := e.newTopic(t, 1)
	keys := []string{"a", keyNotOn("a", 4)}
	e.produce(t, topic, []rec{{Key: []byte(keys[0]), Value: []byte("0")}, {Key: []byte(keys[1]), Value: []byte("1")}})

	// Each dead letter write waits until the other one has started too: if writes of
	// different virtual partitions serialised, neither would ever reach the broker.
	var inFlight atomic.Int64
	both := make(chan struct{})
	var bothOnce sync.Once
	cp := &recordingProvider{Client: e.client(t), wrap: func(w Writer) Writer {
		return &barrierWriter{Writer: w, enter: func(ctx context.Context) error {
			if inFlight.Add(1) == 2 {
				bothOnce.Do(func() { close(both) })
			}
			select {
			case <-both:
				return nil
			case <-time.After(20 * time.Second):
				return errors.New("the other dead letter write never started")
			case <-ctx.Done():
				return ctx.Err()
			}
		}}
	}}
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic,
		DeadLetterTopicConfig: &ProducerTopicConfig{Topic: dlt}}
	results := make(chan error, 2)
	w := NewWorkFactory(cp).CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		return errors.New("boom")
	}, Speedup(4), WithOnDone(func(_ context.Context, _ *Message, err error) { results <- err }))
	r := startWork(t, w)
	t0 := time.Now()
	for range 2 {
		require.Error(t, <-results)
	}
	require.Less(t, time.Since(t0), 15*time.Second, "both writes went through the barrier at their first attempt")
	require.NoError(t, r.stop(t))
	require.Equal(t, map[int32]int64{0: 2}, e.endOffsets(t, dlt))
	require.Equal(t, map[int32]int64{0: 2}, e.committed(t, group, topic))
}

// barrierWriter calls enter before every raw write of the dead letter path.
type barrierWriter struct {
	Writer
	enter func(ctx context.Context) error
}

func (b *barrierWriter) writeMessage(ctx context.Context, key, value []byte, headers []kafka.Header) (Response, error) {
	if err := b.enter(ctx); err != nil {
		return Response{}, err
	}
	return b.Writer.(rawWriter).writeMessage(ctx, key, value, headers)
}

func TestRetryChain(t *testing.T) {
	e := newEnv(t)
	a, b, c := e.newTopic(t, 1), e.newTopic(t, 1), e.newTopic(t, 1)
	e.produce(t, a, []rec{{Key: []byte("order-1"), Value: []byte("payload"), Headers: map[string][]byte{"origin": []byte("shop"), "odd": {0, 0xff}}}})
	wf := NewWorkFactory(e.client(t))
	cfg := func(topic string, dlt string, delay int) ConsumerTopicConfig {
		c := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: uniqueTestName(t, "g"), Topic: topic}
		if dlt != "" {
			c.DeadLetterTopicConfig = &ProducerTopicConfig{Topic: dlt}
		}
		if delay > 0 {
			c.ProcessDelayMillis = intp(delay)
		}
		return c
	}
	type visit struct {
		stage   string
		attempt string
		headers map[string][]byte
		value   string
		at      time.Time
	}
	visits := make(chan visit, 10)
	stage := func(name string, fail bool) func(context.Context, *Message) error {
		return func(ctx context.Context, m *Message) error {
			visits <- visit{name, string(m.Headers[HeaderAttempt]), m.Headers, string(m.Value()), time.Now()}
			if fail {
				return fmt.Errorf("stage %s failed", name)
			}
			return nil
		}
	}
	ra := startWork(t, wf.CreateWithFunc(cfg(a, b, 0), stage("A", true)))
	rb := startWork(t, wf.CreateWithFunc(cfg(b, c, 200), stage("B", true)))
	rc := startWork(t, wf.CreateWithFunc(cfg(c, "", 200), stage("C", false)))
	var got []visit
	for len(got) < 3 {
		select {
		case v := <-visits:
			got = append(got, v)
		case <-time.After(60 * time.Second):
			t.Fatalf("the chain stopped after %d stages", len(got))
		}
	}
	require.NoError(t, ra.stop(t))
	require.NoError(t, rb.stop(t))
	require.NoError(t, rc.stop(t))
	require.Equal(t, []string{"A", "B", "C"}, []string{got[0].stage, got[1].stage, got[2].stage})
	require.Equal(t, []string{"", "1", "2"}, []string{got[0].attempt, got[1].attempt, got[2].attempt})
	for _, v := range got {
		require.Equal(t, "payload", v.value)
		require.Equal(t, []byte("shop"), v.headers["origin"], "original headers survive at stage %s", v.stage)
		require.Equal(t, []byte{0, 0xff}, v.headers["odd"])
	}
	require.Equal(t, a, string(got[1].headers[HeaderOriginalTopic]))
	require.Equal(t, b, string(got[2].headers[HeaderOriginalTopic]))
	require.Equal(t, "stage B failed", string(got[2].headers[HeaderError]))
	require.GreaterOrEqual(t, got[2].at.Sub(got[1].at), 200*time.Millisecond-5*time.Millisecond, "stage C held its message")

	bRecs, cRecs := e.consumeAll(t, b, 1), e.consumeAll(t, c, 1)
	require.Equal(t, "1", string(bRecs[0].Headers[HeaderAttempt]))
	require.Equal(t, "2", string(cRecs[0].Headers[HeaderAttempt]))
	require.Equal(t, []byte("order-1"), cRecs[0].Key)
}

func TestG5DeadLetterTraceContext(t *testing.T) {
	for _, clientToo := range []bool{false, true} {
		name := "factory tracer"
		if clientToo {
			name = "factory and client tracer"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			topic := e.newTopic(t, 1)
			dlt := e.newTopic(t, 1)
			rec0 := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec0))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			prop := propagation.TraceContext{}
			parentTrace, parentSpan := "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
			e.produce(t, topic, []rec{{Key: []byte("k"), Value: []byte("v"),
				Headers: map[string][]byte{"traceparent": []byte("00-" + parentTrace + "-" + parentSpan + "-01")}}})

			var client *Client
			if clientToo {
				client = NewClient(Config{BootstrapServers: []string{e.addr}},
					WithClientTracerProviderOption(tp), WithClientTextMapPropagator(prop))
				t.Cleanup(func() { _ = client.Close() })
			} else {
				client = e.client(t)
			}
			cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: uniqueTestName(t, "g"), Topic: topic,
				DeadLetterTopicConfig: &ProducerTopicConfig{Topic: dlt}}
			done := make(chan error, 1)
			w := NewWorkFactory(client, WithTracerProvider(tp), WithTextMapPropagator(prop)).CreateWithFunc(cfg,
				func(ctx context.Context, m *Message) error { return errors.New("boom") },
				WithOnDone(func(_ context.Context, _ *Message, err error) { done <- err }))
			r := startWork(t, w)
			require.Error(t, <-done)
			require.NoError(t, r.stop(t))

			var process sdktrace.ReadOnlySpan
			for _, s := range rec0.Ended() {
				if s.Name() == topic+" process" {
					process = s
				}
			}
			require.NotNil(t, process, "the processing span was recorded")
			require.Equal(t, parentTrace, process.SpanContext().TraceID().String())
			require.Equal(t, parentSpan, process.Parent().SpanID().String(), "the processing span's parent is the original message's span")

			dl := e.consumeAll(t, dlt, 1)[0]
			tpHeader := string(dl.Headers["traceparent"])
			parts := strings.Split(tpHeader, "-")
			require.Len(t, parts, 4, "traceparent %q", tpHeader)
			require.Equal(t, parentTrace, parts[1], "the dead letter is in the original trace")
			want := process.SpanContext().SpanID().String()
			if clientToo {
				// The writer's publish span is a child of the processing span.
				var publish sdktrace.ReadOnlySpan
				for _, s := range rec0.Ended() {
					if s.Name() == dlt+" publish" {
						publish = s
					}
				}
				require.NotNil(t, publish)
				require.Equal(t, process.SpanContext().SpanID(), publish.Parent().SpanID(), "publish is a child of process")
				want = publish.SpanContext().SpanID().String()
			}
			require.Equal(t, want, parts[2], "the dead letter's parent span is the span that failed it")
		})
	}
}

func TestG5PanicsAndTimeoutsAreDeadLettered(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	dlt := e.newTopic(t, 1)
	e.produce(t, topic, []rec{{Key: []byte("p"), Value: []byte("panic")}, {Key: []byte("t"), Value: []byte("timeout")}, {Key: []byte("ok"), Value: []byte("ok")}})
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic, ProcessTimeoutMillis: intp(100),
		DeadLetterTopicConfig: &ProducerTopicConfig{Topic: dlt}}
	results := make(chan error, 3)
	w := NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		switch m.Key {
		case "p":
			panic("kaput")
		case "t":
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}, WithOnDone(func(_ context.Context, _ *Message, err error) { results <- err }))
	r := startWork(t, w)
	failed := 0
	for range 3 {
		if err := <-results; err != nil {
			failed++
		}
	}
	require.Equal(t, 2, failed, "the panic and the timeout fail, the third succeeds")
	require.NoError(t, r.stop(t))
	require.Equal(t, map[int32]int64{0: 3}, e.committed(t, group, topic))
	dls := e.consumeAll(t, dlt, 2)
	require.Equal(t, map[int32]int64{0: 2}, e.endOffsets(t, dlt))
	require.Equal(t, []byte("p"), dls[0].Key)
	require.Contains(t, string(dls[0].Headers[HeaderError]), "panicked: kaput")
	require.Equal(t, []byte("t"), dls[1].Key)
	require.Contains(t, string(dls[1].Headers[HeaderError]), errProcessTimeout.Error())
}

func TestG5DeadLetterAttemptHeader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string][]byte
		want    string
	}{
		{"source topic", nil, "1"},
		{"second stage", map[string][]byte{HeaderAttempt: []byte("1")}, "2"},
		{"tenth stage", map[string][]byte{HeaderAttempt: []byte("9")}, "10"},
		{"garbage starts over", map[string][]byte{HeaderAttempt: []byte("x")}, "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Message{Topic: "b", Partition: 2, Offset: 7, TimeStamp: time.Unix(1, 5).UTC(), Headers: tc.headers}
			m.Headers = mergeHeaders(tc.headers, map[string][]byte{HeaderOriginalTopic: []byte("a"), "own": []byte("kept")})
			got := map[string][]string{}
			for _, h := range appendDeadLetterHeaders(nil, nil, m, "g", errors.New("bad")) {
				got[h.Key] = append(got[h.Key], string(h.Value))
			}
			require.Equal(t, map[string][]string{
				"own":                   {"kept"},
				HeaderOriginalTopic:     {"b"}, // the previous stage's value is replaced, not repeated
				HeaderOriginalPartition: {"2"},
				HeaderOriginalOffset:    {"7"},
				HeaderOriginalTimestamp: {"1970-01-01T00:00:01.000000005Z"},
				HeaderOriginalGroup:     {"g"},
				HeaderError:             {"bad"},
				HeaderAttempt:           {tc.want},
			}, got)
		})
	}
}

func mergeHeaders(a, b map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// TestG5DeadLettersSurviveAFatalProducerError: the dead letter producer of a running Work
// falls into librdkafka's fatal state (as an idempotent producer does on an out-of-order
// sequence number). The writer replaces it, the failed message is still dead-lettered and its
// partition's offsets are committed. Before, every later dead letter failed for good and the
// partition stalled behind the first one.
func TestG5DeadLettersSurviveAFatalProducerError(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	dlt := e.newTopic(t, 1)
	fp := &fatalProducers{}
	c := NewClient(Config{BootstrapServers: []string{e.addr}}, WithProducerProvider(fp.provider))
	t.Cleanup(func() { _ = c.Close() })
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic,
		DeadLetterTopicConfig: &ProducerTopicConfig{Topic: dlt}}
	var done atomic.Int64
	w := NewWorkFactory(c).CreateWithFunc(cfg, func(_ context.Context, m *Message) error {
		defer done.Add(1)
		if string(m.value) == "bad" {
			return errors.New("bad message")
		}
		return nil
	}, WithDisableCircuitBreaker(true))
	r := startWork(t, w)
	require.Eventually(t, func() bool { return fp.count() == 1 }, 30*time.Second, 10*time.Millisecond, "the dead letter producer is made when Run starts")
	require.Equal(t, kafka.ErrNoError, fp.last().TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "injected by the test"))

	e.produce(t, topic, []rec{{Key: []byte("a"), Value: []byte("ok")}, {Key: []byte("b"), Value: []byte("bad")}, {Key: []byte("c"), Value: []byte("ok")}})
	require.Eventually(t, func() bool { return done.Load() == 3 }, 30*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return e.endOffsets(t, dlt)[0] == 1 }, 30*time.Second, 20*time.Millisecond, "the failed message is dead-lettered")
	require.NoError(t, r.stop(t))
	require.Equal(t, map[int32]int64{0: 3}, e.committed(t, group, topic))
	require.Equal(t, 2, fp.count(), "one replacement producer")
	got := e.consumeAll(t, dlt, 1)
	require.Equal(t, []byte("bad"), got[0].Value)
}

// endedFunc is a deadLetterOwner that is told only how the write ended.
type endedFunc func(written bool)

func (endedFunc) failing()             {}
func (f endedFunc) ended(written bool) { f(written) }

// A queued first attempt that the broker does not acknowledge within deadLetterAttemptTimeout
// goes on in a goroutine, whose attempt writes the dead letter; the first attempt's report,
// when it comes after all, is dropped: the write ends once.
func TestG5QueuedDeadLetterTimeoutIsRetried(t *testing.T) {
	e := newEmbeddedEnv(t)
	dlt := e.newTopic(t, 1)
	// A retriable error: the producer retries the first attempt by itself, unacknowledged.
	fault := dltProduceFault(e, dlt, kerr.NotEnoughReplicas)
	w := NewWorkFactory(e.client(t)).CreateWithFunc(ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: uniqueTestName(t, "g"),
		Topic: "source", DeadLetterTopicConfig: &ProducerTopicConfig{Topic: dlt}}, func(context.Context, *Message) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stopping := make(chan struct{})
	d, err := newDeadLetterWriter(ctx, w, deadLetterRun{ctx: ctx, stopping: stopping, group: "g", logger: NoopLogger{}, failures: newFailureLog(NoopLogger{})})
	require.NoError(t, err)
	defer d.close()
	m := &Message{Topic: "source", Partition: 0, Offset: 7, Key: "k", value: []byte("v"), TimeStamp: time.Now()}
	written := make(chan bool, 2)
	d.start(ctx, waitCut{stopping: stopping, done: ctx.Done(), m: m}, m, errors.New("boom"), endedFunc(func(ok bool) { written <- ok }))

	require.NoError(t, fault.Wait(ctx, 1))
	d.mu.Lock()
	require.Len(t, d.pending, 1)
	first := d.pending[0]
	require.True(t, first.queued, "the first attempt is queued, not acknowledged")
	d.mu.Unlock()
	d.queued().sweep(time.Now().Add(deadLetterAttemptTimeout + time.Millisecond)) // as watch does, later
	d.mu.Lock()
	require.False(t, first.queued, "the timed-out attempt left the queue")
	d.mu.Unlock()
	require.True(t, d.pendingWith(func(p *Message) bool { return p == m }), "the write goes on")

	fault.Remove()
	require.True(t, <-written, "written by a later attempt")
	d.wait()
	first.delivered(nil) // the first attempt's report, late
	require.Empty(t, written, "the write ended once")
	require.False(t, d.pendingWith(func(*Message) bool { return true }))
	require.Eventually(t, func() bool { return e.endOffsets(t, dlt)[0] >= 1 }, 30*time.Second, 20*time.Millisecond)
}
