package zkafka

// A write that does not wait (for the dead letter path, deadletter_queue.go): the record goes
// to the producer with its queuedRecord as the Opaque and no delivery channel of its own, so
// its delivery report arrives on the producer's Events channel, which the writer's drain
// goroutine (producer.go) reads anyway, and which hands the report to the record. No goroutine
// of the caller waits for the acknowledgement: a dead letter written by a goroutine that
// waited cost several times the CPU (make bench, deadletter-s8; docs/performance.md), most of
// it in that goroutine's wake-ups, timers and stack.

import (
	"context"
	"slices"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// deliveryReceiver is told the outcome of a queued record: nil once the broker acknowledged
// it. It is called on the goroutine that drains the producer's events, and must not block.
type deliveryReceiver interface {
	delivered(err error)
}

// queuedRecord is one record handed to a KWriter's producer by queue, until its report.
type queuedRecord struct {
	w     *KWriter
	ctx   context.Context // for the hooks, the propagator and the metrics; never cancels it
	start time.Time
	to    deliveryReceiver
}

// queue hands key, value and headers (as they are: a nil key stays nil) to the producer
// without waiting, as msg (the caller's, so that it need not be allocated on its own), with
// the writer's PreWrite hook and trace propagation, as writeMessage does. It reports false,
// having queued nothing, when this writer cannot do it — closed, transactional, traced (a
// span per write), a producer other than confluent-kafka-go's, or delivery reports turned off
// (go.delivery.reports) — or when the producer refused the record (queue full, fatal error);
// the caller then writes with writeMessage.
func (q *queuedRecord) queue(msg *kafka.Message, key, value []byte, headers []kafka.Header) bool {
	w := q.w
	if w.tc.Transaction || w.tracer != nil || !deliveryReportsOn(w.tc.AdditionalProps) || w.isClosed() {
		return false
	}
	if _, ok := w.producer.(*kafka.Producer); !ok {
		return false
	}
	if w.hooks.PreWrite != nil || w.propagates() {
		headers = slices.Clone(headers) // the hook and the propagator change the list
	}
	*msg = kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &w.topic, Partition: kafka.PartitionAny},
		Key:            key,
		Value:          value,
		Headers:        headers,
		Opaque:         q,
	}
	w.beforeProduce(q.ctx, msg)
	if w.metrics != nil || w.hooks.PostAck != nil {
		q.start = time.Now() // for the write's duration and PostAck's ProduceTime, as send
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	return !w.closed && w.producer.Produce(msg, nil) == nil
}

// delivered takes the delivery report of the record (the writer's drain goroutine calls it),
// runs what writeMessage runs after a report — the metrics, the PostAck hook — and tells the
// receiver.
func (q *queuedRecord) delivered(m *kafka.Message) {
	w := q.w
	_, err := w.producers.report(m)
	if wm := w.metrics; wm != nil {
		wm.written(q.ctx, q.start, err)
	}
	if err == nil {
		w.postAck(q.ctx, q.start)
	}
	q.to.delivered(err)
}

// deliveryReportsOn reports whether a producer configured with these AdditionalProps sends
// delivery reports (go.delivery.reports, default true).
func deliveryReportsOn(props map[string]any) bool {
	v, set := props["go.delivery.reports"]
	on, isBool := v.(bool)
	return !set || (isBool && on)
}
