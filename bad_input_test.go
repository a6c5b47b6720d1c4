package zkafka

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"

	"github.com/zkafka-go/zkafka/testhelper"
)

// bigMessageBytes is the message size limit the G12 test sets on its topics and producers,
// above the 1 MiB values it sends (Kafka's and librdkafka's defaults are about 1 MB).
const bigMessageBytes = 4 << 20

// createBigTopic creates a one-partition topic that accepts records up to bigMessageBytes.
func createBigTopic(t *testing.T, addr string) string {
	t.Helper()
	name := uniqueTestName(t, "t")
	ac, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": addr})
	require.NoError(t, err)
	defer ac.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := ac.CreateTopics(ctx, []kafka.TopicSpecification{{
		Topic: name, NumPartitions: 1, ReplicationFactor: 1,
		Config: map[string]string{"max.message.bytes": strconv.Itoa(bigMessageBytes)},
	}})
	require.NoError(t, err)
	for _, r := range res {
		require.Equal(t, kafka.ErrNoError, r.Error.Code(), "creating %s: %v", name, r.Error)
	}
	testhelper.CreateTopic(t, addr, name, 1) // waits for the leader
	return name
}

// produceRaw writes records to partition 0 in order with a producer that allows big messages
// (testhelper.Produce keeps librdkafka's 1 MB limit).
func produceRaw(t *testing.T, addr, topic string, recs []rec) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": addr, "enable.idempotence": true, "acks": "all",
		"message.max.bytes": bigMessageBytes, "go.logs.channel.enable": false,
	})
	require.NoError(t, err)
	defer p.Close()
	reports := make(chan kafka.Event, len(recs))
	for _, r := range recs {
		km := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0}, Key: r.Key, Value: r.Value}
		names := make([]string, 0, len(r.Headers))
		for k := range r.Headers {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			km.Headers = append(km.Headers, kafka.Header{Key: k, Value: r.Headers[k]})
		}
		require.NoError(t, p.Produce(km, reports))
	}
	for range recs {
		select {
		case ev := <-reports:
			m, ok := ev.(*kafka.Message)
			require.True(t, ok, "unexpected event %v", ev)
			require.NoError(t, m.TopicPartition.Error)
		case <-time.After(60 * time.Second):
			t.Fatal("records not acknowledged within 60 s")
		}
	}
}

// TestG12BadInputNeverStopsAWorker feeds a JSON worker garbage payloads, nil and empty keys
// and values, 1 MiB values and headers with odd bytes. The worker keeps running; what decodes
// is processed, what does not is dead-lettered with its exact key, value and headers; the
// group commits everything.
func TestG12BadInputNeverStopsAWorker(t *testing.T) {
	e := newEnv(t)
	topic := createBigTopic(t, e.addr)
	dlt := createBigTopic(t, e.addr)

	big := func(fill byte) []byte { return bytes.Repeat([]byte{fill}, 1<<20) }
	bigJSON := []byte(`{"name":"` + string(big('x')) + `","n":6}`)
	oddHeaders := map[string][]byte{
		"":          []byte("an empty header name"),
		"binary":    {0x00, 0xff, 0xfe, 0x80},
		"bad-utf8":  {0xc3, 0x28, 0xa0, 0xa1},
		"\xff\xfe":  []byte("a header name that is not UTF-8"),
		"empty-val": {},
	}
	type input struct {
		rec rec
		ok  bool // decodes into the struct
	}
	inputs := []input{
		0:  {rec{Key: []byte("k1"), Value: []byte(`{"name":"a","n":1}`)}, true},
		1:  {rec{Key: []byte("k1"), Value: []byte(`{not json`)}, false},
		2:  {rec{Key: nil, Value: []byte(`{"name":"nil key"}`)}, true},
		3:  {rec{Key: []byte{}, Value: []byte{0xff, 0xfe, 0x00, 0x01}}, false},
		4:  {rec{Key: []byte("k2"), Value: nil}, false},
		5:  {rec{Key: []byte("k3"), Value: []byte{}}, false},
		6:  {rec{Key: []byte("k4"), Value: bigJSON}, true},
		7:  {rec{Key: []byte("k4"), Value: big(0xfe)}, false},
		8:  {rec{Key: []byte("k5"), Value: []byte(`{"name":"odd headers"}`), Headers: oddHeaders}, true},
		9:  {rec{Key: []byte{0xff, 0x00}, Value: []byte("\x00garbage\xff"), Headers: oddHeaders}, false},
		10: {rec{Key: []byte("k6"), Value: []byte(`{"name":5}`)}, false},
		11: {rec{Key: []byte("k6"), Value: []byte(`null`)}, true},
		12: {rec{Key: nil, Value: nil}, false},
		13: {rec{Key: []byte("k7"), Value: []byte(`{"name":"last","n":13}`)}, true},
	}
	recs := make([]rec, len(inputs))
	for i, in := range inputs {
		recs[i] = in.rec
	}
	produceRaw(t, e.addr, topic, recs)

	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{
		ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic, Formatter: JSONFmt,
		// No message.max.bytes here: the dead letter producer's default must take a 1 MiB record.
		DeadLetterTopicConfig: &ProducerTopicConfig{Topic: dlt},
	}
	var mu sync.Mutex
	var processed []int64
	w := NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(_ context.Context, m *Message) error {
		var v struct {
			Name string `json:"name"`
			N    int    `json:"n"`
		}
		if err := m.Decode(&v); err != nil {
			return fmt.Errorf("decoding offset %d: %w", m.Offset, err)
		}
		mu.Lock()
		processed = append(processed, m.Offset)
		mu.Unlock()
		return nil
	}, Speedup(4), DisableCircuitBreaker())
	r := startWork(t, w)

	end := map[int32]int64{0: int64(len(inputs))}
	require.Eventually(t, func() bool {
		select {
		case err := <-r.done:
			t.Fatalf("the worker stopped on bad input: %v", err)
		default:
		}
		c := e.committed(t, group, topic)
		return c[0] == end[0]
	}, 90*time.Second, 100*time.Millisecond, "the group commits every offset despite bad input")
	require.NoError(t, r.stop(t), "the worker is still running and stops cleanly")
	require.Equal(t, end, e.endOffsets(t, topic))
	require.Equal(t, end, e.committed(t, group, topic))

	var wantOK, wantDLT []int64
	for i, in := range inputs {
		if in.ok {
			wantOK = append(wantOK, int64(i))
		} else {
			wantDLT = append(wantDLT, int64(i))
		}
	}
	mu.Lock()
	sort.Slice(processed, func(i, j int) bool { return processed[i] < processed[j] })
	require.Equal(t, wantOK, processed, "every decodable message is processed once")
	mu.Unlock()

	dead := testhelper.ConsumeAll(t, e.addr, dlt, len(wantDLT), 60*time.Second)
	var gotDLT []int64
	for _, d := range dead {
		off, err := strconv.ParseInt(string(d.Headers[HeaderOriginalOffset]), 10, 64)
		require.NoError(t, err)
		gotDLT = append(gotDLT, off)
		src := inputs[off].rec
		require.Equal(t, src.Key == nil, d.Key == nil, "offset %d: nil key kept nil", off)
		require.True(t, bytes.Equal(src.Key, d.Key), "offset %d: key %q, dead letter has %q", off, src.Key, d.Key)
		require.Equal(t, src.Value == nil, d.Value == nil, "offset %d: nil value kept nil", off)
		require.True(t, bytes.Equal(src.Value, d.Value), "offset %d: the dead letter's value differs from the payload (len %d vs %d)", off, len(d.Value), len(src.Value))
		for k, v := range src.Headers {
			require.Contains(t, d.Headers, k, "offset %d: header %q kept", off, k)
			require.True(t, bytes.Equal(v, d.Headers[k]), "offset %d: header %q value kept", off, k)
		}
		require.True(t, strings.Contains(string(d.Headers[HeaderError]), "decoding offset"), "offset %d: the error header names the decode failure: %q", off, d.Headers[HeaderError])
	}
	sort.Slice(gotDLT, func(i, j int) bool { return gotDLT[i] < gotDLT[j] })
	require.Equal(t, wantDLT, gotDLT, "exactly the undecodable messages are dead-lettered")
}
