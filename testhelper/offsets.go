package testhelper

import (
	"context"
	"errors"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// CommittedOffsets returns the offsets group has committed for topic, by partition, read from
// the broker with the admin API (ListConsumerGroupOffsets), so it works on every broker. A
// committed offset is the next offset the group will read. Partitions without a commit are
// absent from the map; a group that never committed gives an empty map.
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
func committed(t testing.TB, addr, group, topic string) []kafka.TopicPartition {
	t.Helper()
	a := newAdmin(t, addr)
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()

	tps := make([]kafka.TopicPartition, 0)
	for _, p := range partitionsOf(ctx, t, a, topic) {
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p})
	}
	res, err := a.ListConsumerGroupOffsets(ctx, []kafka.ConsumerGroupTopicPartitions{{
		Group: group, Partitions: tps,
	}}, kafka.SetAdminRequireStableOffsets(true))
	var kerr kafka.Error
	if errors.As(err, &kerr) && kerr.Code() == kafka.ErrGroupIDNotFound {
		return nil // kfake's answer for a group without commits; Kafka answers with no offsets
	}
	if err != nil {
		t.Fatalf("testhelper: committed offsets of group %s on %s: %v", group, topic, err)
	}
	var out []kafka.TopicPartition
	for _, g := range res.ConsumerGroupsTopicPartitions {
		for _, tp := range g.Partitions {
			if tp.Error != nil {
				t.Fatalf("testhelper: committed offset of group %s on %s[%d]: %v", group, topic, tp.Partition, tp.Error)
			}
			if tp.Offset >= 0 {
				out = append(out, tp)
			}
		}
	}
	return out
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
