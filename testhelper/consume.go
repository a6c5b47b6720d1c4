package testhelper

import (
	"errors"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Consumed is one record read back by [ConsumeAll].
type Consumed struct {
	// Topic, Partition and Offset say where the record was read.
	Topic     string
	Partition int32
	Offset    int64
	// Key is nil for a record without a key and empty (non-nil) for an empty key.
	Key []byte
	// Value is nil for a null value.
	Value []byte
	// Headers holds the record's headers; when a key repeats, the last value wins. nil when
	// the record has none.
	Headers map[string][]byte
	// Timestamp is the record's timestamp (producer create time unless the topic says
	// LogAppendTime).
	Timestamp time.Time
}

// ConsumeAll reads the first n records of topic, from the beginning of every partition, with
// a fresh consumer group that commits nothing, and returns them in the order received
// (ordered within each partition). It fails the test if fewer than n arrive within timeout.
// Committed transactional records only are read (isolation.level=read_committed).
func ConsumeAll(t testing.TB, addr, topic string, n int, timeout time.Duration) []Consumed {
	t.Helper()
	c := readBackConsumer(t, addr, "testhelper-consume")
	defer closeReadBack(t, c)
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatalf("testhelper: subscribing to %s: %v", topic, err)
	}

	out := make([]Consumed, 0, n)
	deadline := time.Now().Add(timeout)
	var lastErr error
	for len(out) < n {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("testhelper: read %d of %d records from %s within %v (last error: %v)", len(out), n, topic, timeout, lastErr)
		}
		m, err := c.ReadMessage(min(left, 200*time.Millisecond))
		if err != nil {
			// Timeouts and transient errors (a topic not created yet, a broker
			// reconnecting) are retried until the deadline.
			var kerr kafka.Error
			if errors.As(err, &kerr) && !kerr.IsFatal() {
				if !kerr.IsTimeout() {
					lastErr = err
				}
				continue
			}
			t.Fatalf("testhelper: reading %s: %v", topic, err)
		}
		out = append(out, toConsumed(m))
	}
	return out
}

// ConsumeTo reads every record of topic below ends (a partition's end offset, as from
// [EndOffsets]), each once, partition by partition from its first offset, with a consumer
// that is in no group, and returns them in offset order within each partition. It fails the
// test if the records below ends do not all arrive within timeout. Unlike [ConsumeAll] it
// cannot stop short when records are appended after ends were taken, or when a record is
// delivered twice: it counts offsets, not records. Committed transactional records only are
// read, and a partition's offsets taken by aborted records or control markers count as read
// once the consumer's position passes them.
func ConsumeTo(t testing.TB, addr, topic string, ends map[int32]int64, timeout time.Duration) []Consumed {
	t.Helper()
	c := readBackConsumer(t, addr, "testhelper-consume-to") // the group is never joined (Assign)
	defer closeReadBack(t, c)
	var tps []kafka.TopicPartition
	left := make(map[int32]int64) // partition -> end offset, while records below it are unread
	for p, end := range ends {
		if end > 0 {
			tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p, Offset: kafka.OffsetBeginning})
			left[p] = end
		}
	}
	if len(tps) == 0 {
		return nil
	}
	if err := c.Assign(tps); err != nil {
		t.Fatalf("testhelper: assigning %s: %v", topic, err)
	}
	byPartition := make(map[int32][]Consumed) // in offset order: the last is the highest taken
	deadline := time.Now().Add(timeout)
	var lastErr error
	for len(left) > 0 {
		wait := time.Until(deadline)
		if wait <= 0 {
			t.Fatalf("testhelper: records of %s below %v not all read within %v (unread: %v; last error: %v)", topic, ends, timeout, left, lastErr)
		}
		m, err := c.ReadMessage(min(wait, 200*time.Millisecond))
		if err != nil {
			var kerr kafka.Error
			if errors.As(err, &kerr) && !kerr.IsFatal() {
				if !kerr.IsTimeout() {
					lastErr = err
				}
				doneByPosition(c, tps, left)
				continue
			}
			t.Fatalf("testhelper: reading %s: %v", topic, err)
		}
		p, o := m.TopicPartition.Partition, int64(m.TopicPartition.Offset)
		got := byPartition[p]
		if end, ok := left[p]; ok && o < end && (len(got) == 0 || o > got[len(got)-1].Offset) {
			byPartition[p] = append(got, toConsumed(m))
			if o+1 >= end {
				delete(left, p)
			}
		}
	}
	var out []Consumed
	for _, tp := range tps {
		out = append(out, byPartition[tp.Partition]...)
	}
	return out
}

// readBackConsumer is a consumer that reads from the start of each partition, commits
// nothing and reads committed transactional records only, in a fresh group named after
// prefix.
func readBackConsumer(t testing.TB, addr, prefix string) *kafka.Consumer {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":     addr,
		"broker.address.family": "v4",
		"client.id":             "zkafka-testhelper",
		"enable.metrics.push":   false,
		"group.id":              UniqueName(t, prefix),
		"auto.offset.reset":     "earliest",
		"enable.auto.commit":    false,
		"isolation.level":       "read_committed",
	})
	if err != nil {
		t.Fatalf("testhelper: consumer for %s: %v", addr, err)
	}
	return c
}

// closeReadBack closes c, logging a failure.
func closeReadBack(t testing.TB, c *kafka.Consumer) {
	if err := c.Close(); err != nil {
		t.Logf("testhelper: closing consumer: %v", err)
	}
}

// doneByPosition drops from left the partitions whose position reached their end: the
// offsets left below it held no record to read (aborted records, control markers).
func doneByPosition(c *kafka.Consumer, tps []kafka.TopicPartition, left map[int32]int64) {
	pos, err := c.Position(tps)
	if err != nil {
		return
	}
	for _, tp := range pos {
		if end, ok := left[tp.Partition]; ok && tp.Offset >= 0 && int64(tp.Offset) >= end {
			delete(left, tp.Partition)
		}
	}
}

func toConsumed(m *kafka.Message) Consumed {
	r := Consumed{
		Partition: m.TopicPartition.Partition,
		Offset:    int64(m.TopicPartition.Offset),
		Key:       m.Key,
		Value:     m.Value,
		Timestamp: m.Timestamp,
	}
	if m.TopicPartition.Topic != nil {
		r.Topic = *m.TopicPartition.Topic
	}
	if len(m.Headers) > 0 {
		r.Headers = make(map[string][]byte, len(m.Headers))
		for _, h := range m.Headers {
			r.Headers[h.Key] = h.Value
		}
	}
	return r
}
