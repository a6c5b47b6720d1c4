package zkafka

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

type tmpClient struct {
	addr string
}

func (c *tmpClient) Reader(ctx context.Context, tc ConsumerTopicConfig, opts ...ReaderOption) (Reader, error) {
	return newReader(readerArgs{tc: tc, fmt: formatterAdapter{}, opts: opts, provider: func(map[string]any) (KafkaConsumer, error) {
		cm := makeConsumerConfig(Config{BootstrapServers: []string{c.addr}}, tc, "")
		return kafka.NewConsumer(&cm)
	}, logger: NoopLogger{}})
}
func (c *tmpClient) Writer(ctx context.Context, tc ProducerTopicConfig, opts ...WriterOption) (Writer, error) {
	return nil, fmt.Errorf("no")
}
func (c *tmpClient) Close() error { return nil }

func TestTmpEngine(t *testing.T) {
	cl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, "t"))
	require.NoError(t, err)
	defer cl.Close()
	addr := cl.ListenAddrs()[0]
	p, _ := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": addr, "go.logs.channel.enable": false})
	topic := "t"
	const N = 20000
	dc := make(chan kafka.Event, N)
	for i := 0; i < N; i++ {
		_ = p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}, Key: []byte(fmt.Sprint(i % 500)), Value: []byte(fmt.Sprint(i))}, dc)
	}
	for i := 0; i < N; i++ {
		<-dc
	}
	p.Close()
	fmtJSON := formatterAdapterJSON{}
	_ = fmtJSON
	var n atomic.Int64
	var mu sync.Mutex
	last := map[string]int64{}
	wf := NewWorkFactory(&tmpClient{addr: addr})
	w := wf.CreateWithFunc(ConsumerTopicConfig{ClientID: "c", GroupID: "g", Topic: "t"}, func(ctx context.Context, m *Message) error {
		mu.Lock()
		k := fmt.Sprint(m.Partition, "/", m.Key)
		if prev, ok := last[k]; ok && prev >= m.Offset {
			t.Errorf("order broken %s %d after %d", k, m.Offset, prev)
		}
		last[k] = m.Offset
		mu.Unlock()
		n.Add(1)
		return nil
	}, Speedup(64))
	shutdown := make(chan struct{})
	done := make(chan error)
	start := time.Now()
	go func() { done <- w.Run(context.Background(), shutdown) }()
	require.Eventually(t, func() bool { return n.Load() == N }, 60*time.Second, 10*time.Millisecond)
	t.Log("processed in", time.Since(start))
	close(shutdown)
	require.NoError(t, <-done)
	ad, _ := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": addr})
	defer ad.Close()
	res, err := ad.ListConsumerGroupOffsets(context.Background(), []kafka.ConsumerGroupTopicPartitions{{Group: "g"}})
	require.NoError(t, err)
	var sum int64
	for _, tp := range res.ConsumerGroupsTopicPartitions[0].Partitions {
		sum += int64(tp.Offset)
	}
	require.Equal(t, int64(N), sum)
}

type formatterAdapterJSON struct{}

func newTestClient(addr string) ClientProvider { return &tmpClient{addr: addr} }
