// Package compat_test uses the library the way a zkafka v2 user's code does: v2's types and
// values, consumers and producers of the user's own with v2's method sets, and v2's mocks.
// v2api_gen_test.go checks every name of v2's API at compile time; this file checks that
// code written against those names works.
package compat_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"
	"github.com/zillow/zfmt"
	"go.uber.org/mock/gomock"

	"github.com/zkafka-go/zkafka"
	mock_zkafka "github.com/zkafka-go/zkafka/mocks"
	mock_confluent "github.com/zkafka-go/zkafka/mocks/confluent"
)

type order struct {
	ID int `json:"id"`
}

// TestV2ConfigValues assigns v2's values to v2's types, as v2 configurations do.
func TestV2ConfigValues(t *testing.T) {
	ctc := zkafka.ConsumerTopicConfig{
		ClientID: "c", GroupID: "g", Topic: "t",
		Formatter: zfmt.JSONFmt, // zfmt's names are the library's
		SchemaID:  7,
		DeadLetterTopicConfig: &zkafka.ProducerTopicConfig{
			Topic: "dlt", Formatter: zkafka.AvroSchemaRegistry,
		},
	}
	require.Equal(t, zfmt.JSONFmt, ctc.GetFormatter())
	require.Equal(t, 7, ctc.GetSchemaID())
	ptc := zkafka.ProducerTopicConfig{ClientID: "c", Topic: "t", Formatter: zfmt.StringFmt, SchemaID: 3}
	require.Equal(t, zfmt.StringFmt, ptc.GetFormatter())
	require.Equal(t, 3, ptc.GetSchemaID())

	ft := zkafka.ProtoSchemaRegistry
	require.Equal(t, zfmt.FormatterType("proto_schema_registry"), ft, "zfmt's type and v2's value")
	for _, ft := range []zfmt.FormatterType{zkafka.CustomFmt, zkafka.JSONSchemaRegistry, zkafka.AvroSchemaRegistry} {
		require.NotEmpty(t, ft)
	}

	states := map[zkafka.CircuitBreakerState]int{
		zkafka.CircuitBreakerStateOpen: 1, zkafka.CircuitBreakerStateHalfOpen: 2, zkafka.CircuitBreakerStateClosed: 3,
	}
	for s, v := range states {
		require.Equal(t, v, int(s))
	}

	tp := zkafka.TopicPartition{Partition: 2, Offset: 10}
	require.Equal(t, int64(10), tp.Offset)

	// Options as v2 users write them, their own included.
	var ropts = []zkafka.ReaderOption{zkafka.RFormatterOption(&zfmt.JSONFormatter{}), func(*zkafka.ReaderSettings) {}}
	var wopts = []zkafka.WriterOption{zkafka.WFormatterOption(&zfmt.JSONFormatter{}), func(s *zkafka.WriterSettings) {
		s.DisableTracePropagation = true
	}}
	require.Len(t, ropts, 2)
	require.Len(t, wopts, 2)
	var _ zkafka.WorkFactoryOption = zkafka.LifecycleHooksOption{}
	copts := []zkafka.Option{zkafka.KafkaGroupPrefixOption("p"), zkafka.LoggerOption(zkafka.NoopLogger{})}
	require.Len(t, copts, 2)
}

// TestV2FakeMessages builds messages with v2's test helpers and a zfmt formatter.
func TestV2FakeMessages(t *testing.T) {
	done := make(chan struct{})
	m := zkafka.GetFakeMessage("k", order{ID: 4}, &zfmt.JSONFormatter{}, func() { close(done) })
	var got order
	require.NoError(t, m.Decode(&got))
	require.Equal(t, 4, got.ID)
	require.Equal(t, "k", m.Key)
	m.Done()
	<-done

	key := "k2"
	m = zkafka.GetMsgFromFake(&zkafka.FakeMessage{
		Key: &key, ValueData: "plain", Fmt: &zfmt.StringFormatter{}, Topic: "t", Partition: 1, Offset: 9,
	})
	var sb jsonBuffer
	require.NoError(t, m.Decode(&sb))
	require.Equal(t, "plain", string(sb))
	require.Equal(t, int64(9), m.Offset)
}

// jsonBuffer is an io.Writer, what zfmt's string formatter decodes into.
type jsonBuffer []byte

func (b *jsonBuffer) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

// TestV2Mocks uses v2's mocks as v2 tests do, including MockReader.Assignments and
// MockKafkaConsumer.ReadMessage.
func TestV2Mocks(t *testing.T) {
	ctrl := gomock.NewController(t)
	r := mock_zkafka.NewMockReader(ctrl)
	r.EXPECT().Assignments(gomock.Any()).Return([]zkafka.Assignment{{Topic: "t", Partition: 1}}, nil)
	r.EXPECT().Read(gomock.Any()).Return(nil, nil)
	var reader zkafka.Reader = r
	msg, err := reader.Read(t.Context())
	require.NoError(t, err)
	require.Nil(t, msg)
	as, err := r.Assignments(t.Context())
	require.NoError(t, err)
	require.Equal(t, "t", as[0].Topic)

	c := mock_confluent.NewMockKafkaConsumer(ctrl)
	c.EXPECT().ReadMessage(time.Second).Return(nil, kafka.NewError(kafka.ErrTimedOut, "timed out", false))
	var kc zkafka.KafkaConsumer = c
	_, err = kc.ReadMessage(time.Second)
	require.Error(t, err)

	p := mock_confluent.NewMockKafkaProducer(ctrl)
	p.EXPECT().Close()
	var kp zkafka.KafkaProducer = p
	kp.Close()

	var cp zkafka.ClientProvider = mock_zkafka.NewMockClientProvider(ctrl)
	var l zkafka.Logger = mock_zkafka.NewMockLogger(ctrl)
	var w zkafka.Writer = mock_zkafka.NewMockWriter(ctrl)
	_, _, _ = cp, l, w
}

// userConsumer is a consumer written by a user against v2's KafkaConsumer: ReadMessage
// serves its messages, then times out like confluent's (after waiting the timeout, or
// until Close). It records the offsets stored and committed.
type userConsumer struct {
	mu        sync.Mutex
	msgs      []*kafka.Message
	stored    map[int32]kafka.Offset
	committed map[int32]kafka.Offset
	stored3   chan struct{} // closed when offset 3 of partition 0 is stored
	closed    chan struct{}
	closeOnce sync.Once
}

func newUserConsumer(topic string, n int) *userConsumer {
	c := &userConsumer{
		stored: map[int32]kafka.Offset{}, committed: map[int32]kafka.Offset{},
		stored3: make(chan struct{}), closed: make(chan struct{}),
	}
	for i := range n {
		v, _ := json.Marshal(order{ID: i})
		c.msgs = append(c.msgs, &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0, Offset: kafka.Offset(i)},
			Key:            []byte("key"),
			Value:          v,
			Timestamp:      time.Now(),
		})
	}
	return c
}

func (c *userConsumer) SubscribeTopics([]string, kafka.RebalanceCb) error { return nil }

func (c *userConsumer) ReadMessage(timeout time.Duration) (*kafka.Message, error) {
	c.mu.Lock()
	if len(c.msgs) > 0 {
		m := c.msgs[0]
		c.msgs = c.msgs[1:]
		c.mu.Unlock()
		return m, nil
	}
	c.mu.Unlock()
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.closed:
		}
	}
	return nil, kafka.NewError(kafka.ErrTimedOut, "timed out", false)
}

func (c *userConsumer) Commit() ([]kafka.TopicPartition, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, o := range c.stored {
		c.committed[p] = o
	}
	return nil, nil
}

func (c *userConsumer) StoreOffsets(offsets []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tp := range offsets {
		c.stored[tp.Partition] = tp.Offset
		if tp.Partition == 0 && tp.Offset == 3 {
			select {
			case <-c.stored3:
			default:
				close(c.stored3)
			}
		}
	}
	return offsets, nil
}

func (c *userConsumer) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *userConsumer) Assignment() ([]kafka.TopicPartition, error) { return nil, nil }
func (c *userConsumer) AssignmentLost() bool                        { return false }

var _ zkafka.KafkaConsumer = (*userConsumer)(nil)

// TestV2UserConsumerWork runs a Work over a consumer of the user's own (v2's method set
// only, so the degraded ReadMessage mode): it processes three messages, stores offset 3
// and commits it on a graceful shutdown.
func TestV2UserConsumerWork(t *testing.T) {
	const topic = "orders"
	uc := newUserConsumer(topic, 3)
	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{"unused:9092"}},
		zkafka.WithConsumerProvider(func(map[string]any) (zkafka.KafkaConsumer, error) { return uc, nil }))
	defer client.Close()

	var mu sync.Mutex
	var ids []int
	work := zkafka.NewWorkFactory(client).CreateWithFunc(zkafka.ConsumerTopicConfig{
		ClientID: "user-consumer", GroupID: "g", Topic: topic, Formatter: zfmt.JSONFmt,
		ReadTimeoutMillis: ptr(50),
	}, func(_ context.Context, msg *zkafka.Message) error {
		var o order
		if err := msg.Decode(&o); err != nil {
			return err
		}
		mu.Lock()
		ids = append(ids, o.ID)
		mu.Unlock()
		return nil
	})
	shutdown := make(chan struct{})
	ran := make(chan error, 1)
	go func() { ran <- work.Run(context.Background(), shutdown) }()
	<-uc.stored3
	close(shutdown)
	require.NoError(t, <-ran)

	mu.Lock()
	require.Equal(t, []int{0, 1, 2}, ids, "one key: processed in order")
	mu.Unlock()
	uc.mu.Lock()
	defer uc.mu.Unlock()
	require.Equal(t, kafka.Offset(3), uc.stored[0])
	require.Equal(t, kafka.Offset(3), uc.committed[0], "graceful shutdown commits")
}

// userProducer is a producer written by a user against v2's KafkaProducer: every record is
// acknowledged at once with the next offset.
type userProducer struct {
	mu     sync.Mutex
	next   kafka.Offset
	values [][]byte
}

func (p *userProducer) Produce(msg *kafka.Message, delivery chan kafka.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.values = append(p.values, msg.Value)
	ack := *msg
	ack.TopicPartition.Offset = p.next
	p.next++
	delivery <- &ack
	return nil
}

func (p *userProducer) Close() {}

var _ zkafka.KafkaProducer = (*userProducer)(nil)

// TestV2UserProducerWriter writes through a producer of the user's own.
func TestV2UserProducerWriter(t *testing.T) {
	up := &userProducer{}
	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{"unused:9092"}},
		zkafka.WithProducerProvider(func(map[string]any) (zkafka.KafkaProducer, error) { return up, nil }))
	defer client.Close()
	w, err := client.Writer(t.Context(), zkafka.ProducerTopicConfig{ClientID: "p", Topic: "t", Formatter: zfmt.JSONFmt},
		func(s *zkafka.WriterSettings) { s.DisableTracePropagation = true })
	require.NoError(t, err)
	for i := range 3 {
		resp, err := w.WriteKey(t.Context(), "k", order{ID: i}, zkafka.WithHeaders(map[string]string{"h": "v"}))
		require.NoError(t, err)
		require.Equal(t, int64(i), resp.Offset)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	require.Equal(t, `{"id":2}`, string(up.values[2]))

	_, err = client.Writer(t.Context(), zkafka.ProducerTopicConfig{ClientID: "tx", Topic: "t", Transaction: true})
	require.ErrorContains(t, err, "Transaction needs a producer with transactions")
}

func ptr[T any](v T) *T { return &v }

// userReader is a Reader of the user's own: it hands out its messages, then reads nothing
// (or fails every read with err). It counts Close calls.
type userReader struct {
	mu     sync.Mutex
	msgs   []*zkafka.Message
	err    error
	closes int
}

func (r *userReader) Read(context.Context) (*zkafka.Message, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) > 0 {
		m := r.msgs[0]
		r.msgs = r.msgs[1:]
		return m, nil
	}
	return nil, r.err
}

func (r *userReader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closes++
	return nil
}

// countingProvider is a ClientProvider that hands out readers[i] on its i-th Reader call (the
// last one after that); a nil entry is a nil Reader without an error.
type countingProvider struct {
	zkafka.FakeClient
	mu      sync.Mutex
	calls   int
	readers []zkafka.Reader
}

func (p *countingProvider) Reader(context.Context, zkafka.ConsumerTopicConfig, ...zkafka.ReaderOption) (zkafka.Reader, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.readers[min(p.calls, len(p.readers)-1)]
	p.calls++
	return r, nil
}

// warnCounter is a Logger that counts warnings with a given message.
type warnCounter struct {
	zkafka.NoopLogger
	msg string
	n   atomic.Int64
}

func (l *warnCounter) Warnw(_ context.Context, msg string, _ ...any) {
	if msg == l.msg {
		l.n.Add(1)
	}
}

func fakeMessage(key, value string) *zkafka.Message {
	return zkafka.GetMsgFromFake(&zkafka.FakeMessage{Key: &key, ValueData: value, Topic: "t"})
}

// TestV2PostFanoutAfterEveryReadAttempt: PostFanout runs after empty reads too, which v2 users
// synchronise on; the Work keeps a reader of the user's own across Runs and does not close it.
func TestV2PostFanoutAfterEveryReadAttempt(t *testing.T) {
	r := &userReader{msgs: []*zkafka.Message{fakeMessage("k", "one")}}
	cp := &countingProvider{readers: []zkafka.Reader{r}}
	processed := make(chan string, 1)
	fanouts := atomic.Int64{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := zkafka.NewWorkFactory(cp).CreateWithFunc(zkafka.ConsumerTopicConfig{ClientID: "c", GroupID: "g", Topic: "t"},
		func(_ context.Context, m *zkafka.Message) error {
			var s string
			if err := m.Decode(&s); err != nil {
				return err
			}
			processed <- s
			return nil
		}, zkafka.WithLifecycleHooks(zkafka.LifecycleHooks{PostFanout: func(context.Context) {
			// The message and at least four empty reads, once the message is processed.
			if fanouts.Add(1) >= 5 && len(processed) == 1 {
				cancel()
			}
		}}))
	require.NoError(t, w.Run(ctx, nil))
	require.Equal(t, "one", <-processed)

	// Run again: the same reader, not asked for again, never closed by the Work.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	fanouts.Store(0)
	processed <- "" // lets the hook cancel after five empty reads
	require.NoError(t, w.Run(ctx, nil))
	require.Equal(t, 1, cp.calls, "the Work holds its reader across Runs")
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Zero(t, r.closes, "a Reader from the user's ClientProvider is the user's to close")
}

// TestV2NilReaderIsRetried: a ClientProvider that returns a nil Reader does not stop Run; the
// failed attempts are logged with v2's words (the first at once, the repeat in a summary line
// under the same words, rate-limited), and the reader that comes later is used.
func TestV2NilReaderIsRetried(t *testing.T) {
	r := &userReader{msgs: []*zkafka.Message{fakeMessage("k", "late")}}
	cp := &countingProvider{readers: []zkafka.Reader{nil, nil, r}}
	logs := &warnCounter{msg: "Kafka worker read message failed"}
	shutdown := make(chan struct{})
	processed := make(chan struct{})
	w := zkafka.NewWorkFactory(cp, zkafka.WithLogger(logs)).CreateWithFunc(
		zkafka.ConsumerTopicConfig{ClientID: "c", GroupID: "g", Topic: "t"},
		func(context.Context, *zkafka.Message) error { close(processed); return nil })
	ran := make(chan error, 1)
	go func() { ran <- w.Run(context.Background(), shutdown) }()
	<-processed
	close(shutdown)
	require.NoError(t, <-ran)
	require.Equal(t, 3, cp.calls)
	require.Equal(t, int64(2), logs.n.Load(), "the first failed read, then the summary of the second at the stop")
}

// TestV2ReadErrorsOpenTheBreaker: read errors count toward the circuit breaker, as in v2.
func TestV2ReadErrorsOpenTheBreaker(t *testing.T) {
	r := &userReader{err: errors.New("broker gone")}
	opened := make(chan struct{})
	var once sync.Once
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := zkafka.NewWorkFactory(zkafka.FakeClient{R: r}).CreateWithFunc(
		zkafka.ConsumerTopicConfig{ClientID: "c", GroupID: "g", Topic: "t"},
		func(context.Context, *zkafka.Message) error { return nil },
		zkafka.CircuitBreakAfter(3), zkafka.CircuitBreakFor(time.Minute),
		zkafka.WithLifecycleHooks(zkafka.LifecycleHooks{
			CircuitBreakerStateChanged: func(_ context.Context, c zkafka.LifecycleCircuitBreakerStateChanged) {
				if c.To == zkafka.CircuitBreakerStateOpen {
					once.Do(func() { close(opened) })
				}
			},
		}))
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx, nil) }()
	<-opened
	cancel()
	require.NoError(t, <-ran)
}
