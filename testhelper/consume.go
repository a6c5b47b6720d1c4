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
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":     addr,
		"broker.address.family": "v4",
		"client.id":             "zkafka-testhelper",
		"enable.metrics.push":   false,
		"group.id":              UniqueName(t, "testhelper-consume"),
		"auto.offset.reset":     "earliest",
		"enable.auto.commit":    false,
		"isolation.level":       "read_committed",
	})
	if err != nil {
		t.Fatalf("testhelper: consumer for %s: %v", addr, err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Logf("testhelper: closing consumer: %v", err)
		}
	}()
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
