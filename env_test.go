package zkafka

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

// testEnv is the broker a test runs against: the one KAFKA_BOOTSTRAP_SERVERS names, or an
// embedded kfake cluster of the test's own.
type testEnv struct {
	addr    string
	cluster *kfake.Cluster // nil on an external broker
	admin   *kafka.AdminClient
}

var nameSeq atomic.Int64

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	e := &testEnv{addr: os.Getenv("KAFKA_BOOTSTRAP_SERVERS")}
	if e.addr == "" {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond), kfake.AllowAutoTopicCreation())
		require.NoError(t, err)
		t.Cleanup(c.Close)
		e.cluster = c
		e.addr = c.ListenAddrs()[0]
	}
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": e.addr, "go.logs.channel.enable": false, "log_level": 3})
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	e.admin = admin
	return e
}

// needEmbedded skips nothing: it fails loudly if a test that needs kfake powers runs on an
// external broker, so callers check embedded() first and choose what to assert.
func (e *testEnv) embedded() bool { return e.cluster != nil }

func uniqueTestName(t testing.TB, prefix string) string {
	n := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return fmt.Sprintf("%s-%s-%d-%d", prefix, strings.ToLower(n), time.Now().UnixNano()%1e6, nameSeq.Add(1))
}

func (e *testEnv) newTopic(t testing.TB, partitions int) string {
	t.Helper()
	name := uniqueTestName(t, "t")
	e.createTopic(t, name, partitions)
	return name
}

func (e *testEnv) createTopic(t testing.TB, name string, partitions int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := e.admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: name, NumPartitions: partitions, ReplicationFactor: 1}})
	require.NoError(t, err)
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError && r.Error.Code() != kafka.ErrTopicAlreadyExists {
			require.NoError(t, r.Error)
		}
	}
	require.Eventually(t, func() bool {
		md, err := e.admin.GetMetadata(&name, false, 5000)
		return err == nil && len(md.Topics[name].Partitions) == partitions && md.Topics[name].Error.Code() == kafka.ErrNoError
	}, 30*time.Second, 20*time.Millisecond)
}

type rec struct {
	key       []byte
	value     []byte
	headers   map[string][]byte
	partition int32 // kafka.PartitionAny (-1) for the partitioner's choice
}

func (e *testEnv) produce(t testing.TB, topic string, recs []rec) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": e.addr, "go.logs.channel.enable": false, "log_level": 3, "linger.ms": 5})
	require.NoError(t, err)
	defer p.Close()
	dc := make(chan kafka.Event, 1024)
	sent := 0
	wait := func(n int) {
		for ; n > 0; n-- {
			select {
			case ev := <-dc:
				m := ev.(*kafka.Message)
				require.NoError(t, m.TopicPartition.Error)
			case <-time.After(30 * time.Second):
				t.Fatal("timed out waiting for delivery reports")
			}
		}
	}
	inflight := 0
	for _, r := range recs {
		part := r.partition
		if part == 0 && r.partition != 0 {
			part = kafka.PartitionAny
		}
		var hs []kafka.Header
		for k, v := range r.headers {
			hs = append(hs, kafka.Header{Key: k, Value: v})
		}
		require.NoError(t, p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: part}, Key: r.key, Value: r.value, Headers: hs}, dc))
		sent++
		inflight++
		if inflight == cap(dc) {
			wait(inflight)
			inflight = 0
		}
	}
	wait(inflight)
}

// keyed makes n records with keys "k<i mod keys>" and values "<i>", spread by the partitioner.
func keyed(n, keys int) []rec {
	out := make([]rec, n)
	for i := range out {
		out[i] = rec{key: []byte(fmt.Sprintf("k%d", i%keys)), value: []byte(fmt.Sprint(i)), partition: kafka.PartitionAny}
	}
	return out
}

func (e *testEnv) committed(t testing.TB, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := e.admin.ListConsumerGroupOffsets(ctx, []kafka.ConsumerGroupTopicPartitions{{Group: group}})
	require.NoError(t, err)
	out := map[int32]int64{}
	for _, g := range res.ConsumerGroupsTopicPartitions {
		for _, tp := range g.Partitions {
			if tp.Topic != nil && *tp.Topic == topic && tp.Offset >= 0 {
				out[tp.Partition] = int64(tp.Offset)
			}
		}
	}
	return out
}

func (e *testEnv) endOffsets(t testing.TB, topic string) map[int32]int64 {
	t.Helper()
	md, err := e.admin.GetMetadata(&topic, false, 10000)
	require.NoError(t, err)
	req := map[kafka.TopicPartition]kafka.OffsetSpec{}
	for _, p := range md.Topics[topic].Partitions {
		req[kafka.TopicPartition{Topic: &topic, Partition: p.ID}] = kafka.LatestOffsetSpec
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := e.admin.ListOffsets(ctx, req)
	require.NoError(t, err)
	out := map[int32]int64{}
	for tp, r := range res.ResultInfos {
		if r.Error.Code() != kafka.ErrNoError {
			require.NoError(t, r.Error)
		}
		out[tp.Partition] = int64(r.Offset)
	}
	return out
}

// consumeAll reads n records of topic from the beginning with a fresh group.
func (e *testEnv) consumeAll(t testing.TB, topic string, n int) []*kafka.Message {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": e.addr, "group.id": uniqueTestName(t, "reader"), "auto.offset.reset": "earliest",
		"enable.auto.commit": false, "go.logs.channel.enable": false, "log_level": 3})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	require.NoError(t, c.Subscribe(topic, nil))
	var out []*kafka.Message
	deadline := time.Now().Add(60 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		m, err := c.ReadMessage(100 * time.Millisecond)
		if err == nil {
			out = append(out, m)
		}
	}
	require.Len(t, out, n, "records in %s", topic)
	return out
}

func (e *testEnv) client(t testing.TB) ClientProvider {
	c := NewClient(Config{BootstrapServers: []string{e.addr}})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func intp(v int) *int { return &v }
