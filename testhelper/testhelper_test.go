package testhelper_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/zkafka-go/zkafka/testhelper"
	_ "github.com/zkafka-go/zkafka/testhelper/container" // ZKAFKA_TESTCONTAINERS=1 may start Kafka in Docker
)

func TestProduceConsumeRoundTrip(t *testing.T) {
	b := testhelper.NewBroker(t)
	t.Logf("broker: %s at %s", b.Kind(), b.Addr())
	topic := testhelper.UniqueName(t, "topic")
	testhelper.CreateTopic(t, b.Addr(), topic, 3)
	testhelper.CreateTopic(t, b.Addr(), topic, 3) // idempotent

	sent := []testhelper.Record{
		{Key: nil, Value: []byte("no key"), Partition: 0},
		{Key: []byte{}, Value: []byte("empty key"), Partition: 1},
		{Key: []byte("k"), Value: []byte("with headers"), Partition: 2,
			Headers: map[string][]byte{"a": []byte("1"), "b": {}}},
		{Key: []byte("k"), Value: nil, Partition: 2},
		{Key: []byte("any"), Value: []byte("partitioner"), Partition: testhelper.AnyPartition},
	}
	before := time.Now().Add(-time.Minute)
	testhelper.Produce(t, b.Addr(), topic, sent...)

	got := testhelper.ConsumeAll(t, b.Addr(), topic, len(sent), 30*time.Second)
	require.Len(t, got, len(sent))
	byValue := map[string]testhelper.Consumed{}
	for _, r := range got {
		assert.Equal(t, topic, r.Topic)
		assert.True(t, r.Timestamp.After(before), "timestamp %v", r.Timestamp)
		byValue[string(r.Value)] = r
	}

	noKey := byValue["no key"]
	assert.Nil(t, noKey.Key, "nil key stays nil")
	assert.Equal(t, int32(0), noKey.Partition)
	assert.Equal(t, int64(0), noKey.Offset)
	assert.Nil(t, noKey.Headers)

	emptyKey := byValue["empty key"]
	assert.NotNil(t, emptyKey.Key, "empty key stays non-nil")
	assert.Empty(t, emptyKey.Key)
	assert.Equal(t, int32(1), emptyKey.Partition)

	withHeaders := byValue["with headers"]
	assert.Equal(t, []byte("k"), withHeaders.Key)
	assert.Equal(t, int32(2), withHeaders.Partition)
	assert.Equal(t, int64(0), withHeaders.Offset)
	assert.Equal(t, []byte("1"), withHeaders.Headers["a"])
	assert.Contains(t, withHeaders.Headers, "b")
	assert.Empty(t, withHeaders.Headers["b"])

	tombstone := byValue[""]
	assert.Nil(t, tombstone.Value, "null value stays nil")
	assert.Equal(t, int64(1), tombstone.Offset)

	end := testhelper.EndOffsets(t, b.Addr(), topic)
	assert.Len(t, end, 3)
	var total int64
	for _, o := range end {
		total += o
	}
	assert.Equal(t, int64(len(sent)), total)
	assert.Equal(t, int64(2), end[2]-boolInt(byValue["partitioner"].Partition == 2))
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func TestCommittedOffsetsAfterCommit(t *testing.T) {
	b := testhelper.NewBroker(t)
	topic := testhelper.UniqueName(t, "topic")
	group := testhelper.UniqueName(t, "group")
	testhelper.CreateTopic(t, b.Addr(), topic, 2)
	testhelper.Produce(t, b.Addr(), topic,
		testhelper.Record{Value: []byte("a"), Partition: 0},
		testhelper.Record{Value: []byte("b"), Partition: 0},
		testhelper.Record{Value: []byte("c"), Partition: 1},
	)
	assert.Empty(t, testhelper.CommittedOffsets(t, b.Addr(), group, topic), "no commit yet")

	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":   b.Addr(),
		"enable.metrics.push": false,
		"group.id":            group,
		"auto.offset.reset":   "earliest",
		"enable.auto.commit":  false,
		"session.timeout.ms":  6000,
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, c.Close()) }()
	require.NoError(t, c.Subscribe(topic, nil))

	group1 := testhelper.WaitGroupStable(t, b.Addr(), group, 1, 30*time.Second)
	// The group can be stable before this member's assignment is applied; read on.
	for read := 0; read < 3; {
		m, err := c.ReadMessage(10 * time.Second)
		require.NoError(t, err)
		read++
		if bytes.Equal(m.Value, []byte("a")) {
			// Commit exactly "a" on partition 0: the next offset to read is 1.
			_, err := c.CommitOffsets([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: m.TopicPartition.Offset + 1}})
			require.NoError(t, err)
		}
	}
	assert.Equal(t, map[int32]int64{0: 1}, testhelper.CommittedOffsets(t, b.Addr(), group, topic))
	assert.Equal(t, 2, group1.Assigned())

	_, err = c.Commit()
	require.NoError(t, err)
	assert.Equal(t, testhelper.EndOffsets(t, b.Addr(), topic), testhelper.CommittedOffsets(t, b.Addr(), group, topic))

	g := testhelper.DescribeGroup(t, b.Addr(), group)
	assert.Equal(t, "Stable", g.State)
	require.Len(t, g.Members, 1)
	assert.Equal(t, map[string][]int32{topic: {0, 1}}, g.Members[0].Assignment)
}

// TestEmbeddedFaultsAndGroupGeneration uses kfake-only powers, so it asks for the embedded
// broker explicitly and runs the same whatever KAFKA_BOOTSTRAP_SERVERS says.
func TestEmbeddedFaultsAndGroupGeneration(t *testing.T) {
	b := testhelper.EmbeddedBroker(t, kfake.NumBrokers(1))
	require.True(t, b.Embedded())
	require.Equal(t, testhelper.KindEmbedded, b.Kind())
	topic := testhelper.UniqueName(t, "topic")
	testhelper.CreateTopic(t, b.Addr(), topic, 1)

	// One retriable produce failure: the producer retries and the record lands once.
	h := b.Cluster(t).Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.NotLeaderForPartition})
	defer h.Remove()
	testhelper.Produce(t, b.Addr(), topic, testhelper.Record{Value: []byte("x")})
	assert.Equal(t, 1, h.Hits())
	assert.Equal(t, map[int32]int64{0: 1}, testhelper.EndOffsets(t, b.Addr(), topic))

	group := testhelper.UniqueName(t, "group")
	assert.Equal(t, int32(-1), b.GroupGeneration(t, group))
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":     b.Addr(),
		"enable.metrics.push":   false,
		"group.id":              group,
		"session.timeout.ms":    int(testhelper.MinSessionTimeout / time.Millisecond), // accepted: see DefaultEmbeddedOptions
		"heartbeat.interval.ms": 300,
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, c.Close()) }()
	require.NoError(t, c.Subscribe(topic, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	polled := make(chan struct{})
	go func() { // the consumer joins only while polled
		defer close(polled)
		for ctx.Err() == nil {
			c.Poll(50)
		}
	}()
	info, err := b.Cluster(t).WaitGroupStable(ctx, group, 1)
	cancel()
	<-polled
	require.NoError(t, err)
	assert.Equal(t, 1, info.NumAssigned())
	assert.GreaterOrEqual(t, b.GroupGeneration(t, group), int32(1))
}

func TestStartEmbedded(t *testing.T) {
	e, err := testhelper.StartEmbedded(kfake.NumBrokers(2))
	require.NoError(t, err)
	assert.Len(t, strings.Split(e.Addr(), ","), 2)
	assert.NotNil(t, e.Cluster())
	e.Close()
	e.Close() // safe twice
}

func TestUniqueName(t *testing.T) {
	a := testhelper.UniqueName(t, "orders")
	b := testhelper.UniqueName(t, "orders")
	assert.NotEqual(t, a, b)
	assert.True(t, strings.HasPrefix(a, "orders-TestUniqueName-"), a)
	t.Run("sub test/with spaces+symbols", func(t *testing.T) {
		n := testhelper.UniqueName(t, "")
		for _, r := range n {
			assert.True(t, strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", r), "bad rune %q in %s", r, n)
		}
		assert.LessOrEqual(t, len(n), 249)
	})
}

// TestNoDockerInTesthelper: a program that imports testhelper (an example, a user's test
// helper) does not pull testcontainers or Docker's client in; testhelper/container does.
func TestNoDockerInTesthelper(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/zkafka-go/zkafka/testhelper").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, dep := range strings.Fields(string(out)) {
		require.False(t, strings.Contains(dep, "testcontainers") || strings.Contains(dep, "docker"),
			"testhelper depends on %s", dep)
	}
}

// TestConsumeToReadsEveryOffsetBelowTheEnds: records appended after the end offsets were
// taken are not read in place of earlier ones (ConsumeAll counts records and could stop
// short on one partition while reading the newer records of another).
func TestConsumeToReadsEveryOffsetBelowTheEnds(t *testing.T) {
	b := testhelper.NewBroker(t)
	topic := testhelper.UniqueName(t, "topic")
	testhelper.CreateTopic(t, b.Addr(), topic, 2)
	var first []testhelper.Record
	for i := range 6 {
		first = append(first, testhelper.Record{Value: []byte{byte('a' + i)}, Partition: int32(i % 2)})
	}
	testhelper.Produce(t, b.Addr(), topic, first...)
	ends := testhelper.EndOffsets(t, b.Addr(), topic)
	require.Equal(t, map[int32]int64{0: 3, 1: 3}, ends)
	var later []testhelper.Record
	for range 50 {
		later = append(later, testhelper.Record{Value: []byte("late"), Partition: 1})
	}
	testhelper.Produce(t, b.Addr(), topic, later...)

	got := testhelper.ConsumeTo(t, b.Addr(), topic, ends, 30*time.Second)
	var at []string
	for _, r := range got {
		at = append(at, fmt.Sprintf("%d/%d=%s", r.Partition, r.Offset, r.Value))
	}
	require.ElementsMatch(t, []string{"0/0=a", "0/1=c", "0/2=e", "1/0=b", "1/1=d", "1/2=f"}, at)
	require.Empty(t, testhelper.ConsumeTo(t, b.Addr(), topic, map[int32]int64{0: 0}, time.Second))
}
