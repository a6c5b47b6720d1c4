package testhelper

import (
	"sort"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// AnyPartition lets the producer's partitioner choose a record's partition (by key hash, or
// spread when the key is nil). It is the value to put in [Record.Partition] by default.
const AnyPartition int32 = kafka.PartitionAny

// Record is one message for [Produce].
type Record struct {
	// Key is the record key. nil sends no key (a null key on the wire); an empty non-nil
	// slice sends an empty key.
	Key []byte
	// Value is the record value; nil sends a null value (a tombstone).
	Value []byte
	// Headers are sent in key order; nil sends none.
	Headers map[string][]byte
	// Partition is the partition to write to; [AnyPartition] (-1) lets the partitioner choose.
	// The zero value writes to partition 0.
	Partition int32
}

// Produce writes msgs to topic in order, waits for the broker to acknowledge every one of
// them, and fails the test on any delivery error. It uses an idempotent producer with
// acks=all and one request in flight, so records to one partition land in the order given
// and a record reported delivered is in the topic even when a broker refuses a request.
func Produce(t testing.TB, addr, topic string, msgs ...Record) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":     addr,
		"broker.address.family": "v4",
		"client.id":             "zkafka-testhelper",
		"enable.metrics.push":   false,
		"enable.idempotence":    true,
		"acks":                  "all",
		"linger.ms":             5,
		"delivery.timeout.ms":   int(opTimeout / time.Millisecond),
		// librdkafka's 5 can report a refused first request delivered (see the library's
		// maxInFlightIdempotent).
		"max.in.flight.requests.per.connection": 1,
	})
	if err != nil {
		t.Fatalf("testhelper: producer for %s: %v", addr, err)
	}
	defer p.Close()

	reports := make(chan kafka.Event, len(msgs))
	for i, m := range msgs {
		km := &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: m.Partition},
			Key:            m.Key,
			Value:          m.Value,
			Headers:        sortedHeaders(m.Headers),
		}
		if err := p.Produce(km, reports); err != nil {
			t.Fatalf("testhelper: producing record %d to %s: %v", i, topic, err)
		}
	}
	timeout := time.After(opTimeout + 5*time.Second)
	for i := range msgs {
		select {
		case ev := <-reports:
			m, ok := ev.(*kafka.Message)
			if !ok {
				t.Fatalf("testhelper: producing to %s: unexpected event %v", topic, ev)
			}
			if m.TopicPartition.Error != nil {
				t.Fatalf("testhelper: producing to %s: %v", topic, m.TopicPartition.Error)
			}
		case <-timeout:
			t.Fatalf("testhelper: producing to %s: %d of %d records unacknowledged", topic, len(msgs)-i, len(msgs))
		}
	}
}

func sortedHeaders(h map[string][]byte) []kafka.Header {
	if len(h) == 0 {
		return nil
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]kafka.Header, 0, len(keys))
	for _, k := range keys {
		out = append(out, kafka.Header{Key: k, Value: h[k]})
	}
	return out
}
