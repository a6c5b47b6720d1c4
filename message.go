package zkafka

// Message: one record read from Kafka, as a processor or a Reader's caller sees it, with its
// payload accessors (Decode, Value) and Done, which tells the commit tracker (commit.go) that
// it is finished. The engine's bookkeeping rides along in unexported fields.

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/zkafka-go/zkafka/internal/commit"
	"github.com/zkafka-go/zkafka/internal/format"
)

// Message is one record read from Kafka, handed to a processor by a Work or returned by
// Reader.Read. Its exported fields are the record's coordinates and metadata; the payload is
// read with Decode or Value.
type Message struct {
	// Key is the record key as a string. A record with no key has Key "" and is told apart
	// from an empty key by IsKeyNil.
	Key string
	// Headers holds the record headers. Nil when the record has none.
	Headers map[string][]byte
	// Offset is the record's offset within its partition.
	Offset int64
	// Partition is the Kafka partition the record was read from.
	Partition int32
	// Topic is the topic the record was read from.
	Topic string
	// GroupID is the consumer group that read the record.
	GroupID string
	// TimeStamp is the record's timestamp (producer create time or broker log-append time).
	TimeStamp time.Time

	value []byte
	fmt   format.Formatter

	doneFunc func(ctx context.Context)

	// pctx is the processor's context for this message (see procCtx).
	pctx procCtx

	// Set by KReader: the partition's commit tracker and the message's sequence in it.
	trk *commit.Partition
	seq uint64
	// Set by a Work: the context PostRead returned, the processor's parent.
	ctx context.Context
	// vp is the virtual partition the message was routed to; route is its key's route.
	vp    int
	route *keyRoute
	// hookErr is set when a lifecycle hook panicked for this message: it then fails.
	hookErr error
	// readAt is when a Work's reader read the message (UnixNano; one clock reading per
	// batch), for Work.Status.
	readAt int64
	// metrics is the attribute sets of its partition, set when the Work has metrics.
	metrics *partitionMetrics

	// The small fields last, side by side: with padding between them a Message took the
	// next allocation size class up (352 bytes instead of 320).
	done atomic.Bool // set by the first Done
	// retries counts the failed runs of the processor that were followed by a retry.
	retries int32
	// Set by KReader (poison.go): how the message enters its handler, and how often in a
	// row the process died with it in a handler.
	deaths uint32
	admit  admission
	// taken is set while the message, taken from its virtual partition's parking, runs.
	taken    bool
	isKeyNil bool
}

// Response is what a write returns: where the broker stored the record.
type Response struct {
	// Partition the record was written to.
	Partition int32
	// Offset the record was given.
	Offset int64
}

// IsKeyNil reports whether the record had no key at all (as opposed to an empty key).
func (m *Message) IsKeyNil() bool {
	return m != nil && m.isKeyNil
}

// Decode unmarshals the payload into v with the formatter the Reader was configured with.
// It returns an error, never panics, for a nil message, a missing formatter or a payload the
// formatter cannot read. A payload the formatter cannot read is the message's own fault: a
// Work does not retry it nor count it toward the circuit breaker, even when the processor
// returns the error wrapped (IsPermanentError reports true). A schema registry that cannot be
// reached, or answers with a server error, is not the message's fault: that error stays
// transient.
func (m *Message) Decode(v any) error {
	if m == nil {
		return errors.New("zkafka: cannot decode a nil message")
	}
	if m.fmt == nil {
		return errors.New("zkafka: message has no formatter to decode with")
	}
	if err := m.fmt.Decode(m.Topic, m.value, v); err != nil {
		return &decodeError{err: err}
	}
	return nil
}

// Attempt returns which run of the processor this is for the message: 1 for the first, 2 for
// the first retry, and so on (see WithRetry). It is 1 for a message that was never retried,
// and for a message from Reader.Read.
func (m *Message) Attempt() int {
	if m == nil {
		return 1
	}
	return int(m.retries) + 1
}

// Value returns a copy of the raw payload; nil when the record had no value.
func (m *Message) Value() []byte {
	if m == nil || m.value == nil {
		return nil
	}
	out := make([]byte, len(m.value))
	copy(out, m.value)
	return out
}

// Done marks the message as finished so that its offset may be committed once every earlier
// message of its partition is finished too. Only the first call has an effect. A Work calls
// it for you; call it yourself only for messages from Reader.Read.
func (m *Message) Done() {
	m.DoneWithContext(context.Background())
}

// DoneWithContext is Done with a context passed to the completion (for logging and tracing).
func (m *Message) DoneWithContext(ctx context.Context) {
	if m == nil {
		return
	}
	if m.done.Load() || !m.done.CompareAndSwap(false, true) {
		return
	}
	if m.trk != nil {
		m.trk.Finish(m.seq)
	}
	if m.doneFunc != nil {
		m.doneFunc(ctx)
	}
}

// key returns the record key as the wire sees it: nil for a nil key.
func (m *Message) key() []byte {
	if m.isKeyNil {
		return nil
	}
	return []byte(m.Key)
}

// headerMap converts confluent's header list to the Message's map; nil for no headers.
func headerMap(hs []kafka.Header) map[string][]byte {
	if len(hs) == 0 {
		return nil
	}
	out := make(map[string][]byte, len(hs))
	for _, h := range hs {
		out[h.Key] = h.Value
	}
	return out
}
