package testhelper

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// CommittedOffsets returns the offsets group has committed for topic, by partition, read from
// the broker through the group's coordinator (a consumer's Committed, which joins no group),
// so it works on every broker. A committed offset is the next offset the group will read.
// Partitions without a commit are absent from the map; a group that never committed gives an
// empty map.
func CommittedOffsets(t testing.TB, addr, group, topic string) map[int32]int64 {
	t.Helper()
	out := make(map[int32]int64)
	for _, tp := range committed(t, addr, group, topic) {
		out[tp.Partition] = int64(tp.Offset)
	}
	return out
}

// CommittedMetadata returns the metadata of the offsets group has committed for topic, by
// partition (read like CommittedOffsets). Partitions without a commit are absent.
func CommittedMetadata(t testing.TB, addr, group, topic string) map[int32]string {
	t.Helper()
	out := make(map[int32]string)
	for _, tp := range committed(t, addr, group, topic) {
		md := ""
		if tp.Metadata != nil {
			md = *tp.Metadata
		}
		out[tp.Partition] = md
	}
	return out
}

// committed lists the committed offsets of group on topic, partitions without one left out.
//
// It reads them with a consumer of the group (Committed) rather than the admin API's
// ListConsumerGroupOffsets: librdkafka's admin client dereferences a consumer group it does
// not have when that request's OffsetFetch is answered COORDINATOR_LOAD_IN_PROGRESS (the
// first group request to a freshly started Kafka), and the test process dies of SIGSEGV in
// rd_kafka_cgrp_op. A consumer's Committed goes through its group coordinator, which waits
// such a load out.
func committed(t testing.TB, addr, group, topic string) []kafka.TopicPartition {
	t.Helper()
	c := offsetReader(t, addr, group)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	tps := make([]kafka.TopicPartition, 0)
	for _, p := range partitionsOf(ctx, t, c, topic) {
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p})
	}
	got, err := readCommitted(ctx, c, tps)
	var kerr kafka.Error
	if errors.As(err, &kerr) && kerr.Code() == kafka.ErrGroupIDNotFound {
		return nil // kfake's answer for a group without commits; Kafka answers with no offsets
	}
	if err != nil {
		t.Fatalf("testhelper: committed offsets of group %s on %s: %v", group, topic, err)
	}
	var out []kafka.TopicPartition
	for _, tp := range got {
		if tp.Error != nil {
			t.Fatalf("testhelper: committed offset of group %s on %s[%d]: %v", group, topic, tp.Partition, tp.Error)
		}
		if tp.Offset >= 0 {
			out = append(out, tp)
		}
	}
	return out
}

// readCommitted reads the committed offsets of tps through c, asking again while the group's
// coordinator moves or loads (a freshly started Kafka answers NOT_COORDINATOR and
// COORDINATOR_LOAD_IN_PROGRESS for a while), until ctx ends.
func readCommitted(ctx context.Context, c *kafka.Consumer, tps []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	for {
		got, err := c.Committed(tps, int(opTimeout/time.Millisecond))
		var kerr kafka.Error
		if !errors.As(err, &kerr) || !coordinatorBusy(kerr.Code()) {
			return got, err
		}
		select {
		case <-ctx.Done():
			return got, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// coordinatorBusy reports whether code means the group's coordinator is moving or loading.
func coordinatorBusy(code kafka.ErrorCode) bool {
	switch code {
	case kafka.ErrNotCoordinator, kafka.ErrCoordinatorLoadInProgress, kafka.ErrCoordinatorNotAvailable, kafka.ErrWaitCoord:
		return true
	}
	return false
}

// offsetReaders are the consumers committed reads through, one per test, broker and group:
// made at the first read and closed when the test ends.
var offsetReaders sync.Map // offsetReaderKey → *kafka.Consumer

type offsetReaderKey struct {
	t           testing.TB
	addr, group string
}

// offsetReader returns the consumer that reads group's committed offsets on addr for t. It
// never subscribes, so it never joins the group.
func offsetReader(t testing.TB, addr, group string) *kafka.Consumer {
	t.Helper()
	k := offsetReaderKey{t, addr, group}
	if c, ok := offsetReaders.Load(k); ok {
		return c.(*kafka.Consumer)
	}
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":     addr,
		"broker.address.family": "v4",
		"client.id":             "zkafka-testhelper",
		"group.id":              group,
		"enable.auto.commit":    false,
		"isolation.level":       "read_committed", // stable offsets only, as the group will read them
		"enable.metrics.push":   false,
		"log.connection.close":  false,
	})
	if err != nil {
		t.Fatalf("testhelper: consumer reading the offsets of group %s: %v", group, err)
	}
	if prev, loaded := offsetReaders.LoadOrStore(k, c); loaded {
		_ = c.Close()
		return prev.(*kafka.Consumer)
	}
	t.Cleanup(func() {
		offsetReaders.Delete(k)
		_ = c.Close()
	})
	return c
}

// EndOffsets returns each partition's end offset (the high watermark: one past the last
// record, transaction markers included) of topic, read with the admin API (ListOffsets with
// the latest spec), so it works on every broker. An empty partition has end offset 0.
func EndOffsets(t testing.TB, addr, topic string) map[int32]int64 {
	t.Helper()
	a := newAdmin(t, addr)
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()

	req := make(map[kafka.TopicPartition]kafka.OffsetSpec)
	for _, p := range partitionsOf(ctx, t, a, topic) {
		req[kafka.TopicPartition{Topic: &topic, Partition: p}] = kafka.LatestOffsetSpec
	}
	res, err := a.ListOffsets(ctx, req, kafka.SetAdminIsolationLevel(kafka.IsolationLevelReadUncommitted))
	if err != nil {
		t.Fatalf("testhelper: end offsets of %s: %v", topic, err)
	}
	out := make(map[int32]int64, len(res.ResultInfos))
	for tp, info := range res.ResultInfos {
		if info.Error.Code() != kafka.ErrNoError {
			t.Fatalf("testhelper: end offset of %s[%d]: %v", topic, tp.Partition, info.Error)
		}
		out[tp.Partition] = int64(info.Offset)
	}
	return out
}
