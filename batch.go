package zkafka

// Batch processors: the public side. A Work made by WorkFactory.CreateBatch hands its
// processor a slice of messages per call instead of one message; BatchPolicy (WithBatch) says
// how large a batch may grow and how long its processor waits for it to fill; a BatchError
// says which messages of a batch failed. batch_processor.go runs them.
//
// What a batch promises (G20), in one place:
//
//   - A batch holds messages of one virtual partition, in the order they were read. The
//     batches of a virtual partition run one at a time, so the messages of a key are processed
//     in offset order within a batch and across batches (G2), at any Speedup.
//   - ProcessBatch returning nil finishes every message of the batch.
//   - A *BatchError finishes every message it does not name, at once. Each message it names
//     takes the failure path a single message would take with that error: retried (WithRetry)
//     if transient with attempts left, else dead-lettered or skipped, by its class (errclass.go:
//     PermanentError, Decode errors and panics are permanent). While a failed message waits for
//     its retry, the later messages of its key wait behind it and run after it, in order —
//     those of the same batch too, whatever their result in it: they run again; other keys go
//     on.
//   - Any other error or a panic fails the whole batch: every message takes the failure path
//     with that error.
//   - ProcessTimeoutMillis applies to the batch: past it, ProcessBatch's context is cancelled
//     and the whole batch fails with the timeout, unless ProcessBatch answers with a
//     *BatchError: then the messages it names fail (with the timeout) and the others, which it
//     says it finished, succeed. A batch still running a grace period later is abandoned as a
//     whole (G10).
//   - The circuit breaker counts a batch as one run: it admits the batch once and counts a
//     failed batch once.
//   - ProcessDelayMillis holds a message out of batches until it is due: a batch starts with a
//     due message and takes in only due ones.
//   - A revoke or a stop never splits a batch between two owners: a batch that has started
//     finishes (a revoke and a graceful stop wait for it; a revoke up to its deadline, past
//     which the whole batch is left to the next owner, as at an abrupt stop); the messages of
//     a batch that has not started are dropped for the next owner.
//   - The in-flight bound (MaxInFlight, MaxInFlightBytes) counts the messages of a batch one by
//     one; offsets are committed per message, as for a single-message processor.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
)

// BatchProcessor is what a Work made by WorkFactory.CreateBatch runs: ProcessBatch gets the
// messages of one batch, in read order, all of one virtual partition (see BatchPolicy for how
// a batch is formed). It returns nil when every message succeeded, a *BatchError naming the
// messages that failed (the others succeeded), or any other error (or a panic) when the whole
// batch failed. The slice belongs to the Work: do not keep it, nor use it, after
// ProcessBatch returned. ctx is cancelled when the batch outlives ProcessTimeoutMillis and at
// an abrupt stop: start no further message then, and return a *BatchError naming those not
// finished (the others are finished), or an error (the whole batch fails).
type BatchProcessor interface {
	ProcessBatch(ctx context.Context, msgs []*Message) error
}

// batchProcessorFunc adapts a function to BatchProcessor.
type batchProcessorFunc func(ctx context.Context, msgs []*Message) error

func (f batchProcessorFunc) ProcessBatch(ctx context.Context, msgs []*Message) error {
	return f(ctx, msgs)
}

// CreateBatch returns a Work that runs p for batches of messages of the topics of cfg, formed
// by the Work's BatchPolicy (WithBatch; defaults without it). Every other option works as with
// Create. Configuration errors (a nil p included) are returned by Run.
//
// The lifecycle hooks keep their per-message meaning: PostRead when each message is read;
// PreProcessing for each message of a batch, in order, just before ProcessBatch (the contexts
// they return are not passed on: ProcessBatch has one context, the batch's); PostProcessing for
// each message, in order, once ProcessBatch returned, with that message's own error and the
// batch's duration as ProcessingTime; the OnDone callbacks per message when it is finished. A
// message whose PostRead or PreProcessing hook panicked is left out of the batch and fails with
// the panic. With a tracer provider a batch has one consumer span, linked to the trace of each
// of its messages.
func (f WorkFactory) CreateBatch(cfg ConsumerTopicConfig, p BatchProcessor, opts ...WorkOption) *Work {
	w := newWork(f, cfg, opts)
	if p != nil {
		w.batcher = p
	}
	return w
}

// CreateBatchWithFunc is CreateBatch with a function as the batch processor.
func (f WorkFactory) CreateBatchWithFunc(cfg ConsumerTopicConfig, p func(ctx context.Context, msgs []*Message) error, opts ...WorkOption) *Work {
	w := newWork(f, cfg, opts)
	if p != nil {
		w.batcher = batchProcessorFunc(p)
	}
	return w
}

// BatchPolicy says how a Work made by CreateBatch forms its batches. The processor of a
// virtual partition starts a batch with the next message it may run, then takes in the
// messages queued behind it, in order, until the batch holds MaxMessages messages or
// MaxBytes payload bytes, or the next message may not join (it is not due yet under
// ProcessDelayMillis, or it is a suspected poison pill, which runs alone); when its queue runs
// dry first, it waits up to MaxWait, from when the batch started, for more. The zero value of
// each field takes its default.
type BatchPolicy struct {
	// MaxMessages is the most messages in one batch (default 100).
	MaxMessages int
	// MaxBytes is the most payload bytes in one batch (default 1 MiB); a message larger
	// than that is a batch of its own.
	MaxBytes int
	// MaxWait is how long a batch waits for more messages when its virtual partition's queue
	// runs dry before it is full (default 0: a batch is what is queued when it starts, so a
	// lightly loaded Work runs small batches at once and a busy one runs full batches, the
	// queue filling while the previous batch runs). Set it (a few milliseconds) when every
	// call costs much and messages trickle in; a stop or a revoke cuts the wait short.
	// Negative means 0.
	MaxWait time.Duration
}

// Defaults of BatchPolicy.
const (
	defaultBatchMaxMessages = 100
	defaultBatchMaxBytes    = 1 << 20
)

// WithBatch sets the policy by which a Work made by CreateBatch forms its batches (default
// BatchPolicy{}: at most 100 messages and 1 MiB, no wait). Run returns a configuration error
// when it is given to a Work with a single-message processor (Create, CreateWithFunc).
func WithBatch(p BatchPolicy) WorkOption {
	return workOptionFunc(func(w *Work) { w.batchPolicy = &p })
}

// withDefaults fills the zero fields.
func (p BatchPolicy) withDefaults() BatchPolicy {
	if p.MaxMessages == 0 {
		p.MaxMessages = defaultBatchMaxMessages
	}
	if p.MaxBytes == 0 {
		p.MaxBytes = defaultBatchMaxBytes
	}
	p.MaxWait = max(p.MaxWait, 0)
	return p
}

// validate returns a configuration error for a policy that cannot be followed (after
// withDefaults).
func (p BatchPolicy) validate() error {
	switch {
	case p.MaxMessages < 1:
		return errConfig("BatchPolicy.MaxMessages is %d; it must be at least 1", p.MaxMessages)
	case p.MaxBytes < 1:
		return errConfig("BatchPolicy.MaxBytes is %d; it must be at least 1", p.MaxBytes)
	}
	return nil
}

// BatchError is what a BatchProcessor returns when some messages of a batch failed: Failed
// maps the index of each failed message in the batch (the slice ProcessBatch got) to its
// error, classed as a single message's error is (PermanentError, a Decode error or a panic is
// permanent; anything else transient; a ProcessError's flags apply). Every message it does not
// name succeeded, as does one it names with a nil error. A BatchError that names no message is
// a success; one that names an index outside the batch fails the whole batch. Return it as a
// *BatchError (wrapping it with %w is fine).
type BatchError struct {
	// Failed maps the index of each failed message in the batch to its error.
	Failed map[int]error
}

// Fail records that the message at index i of the batch failed with err.
func (e *BatchError) Fail(i int, err error) {
	if e.Failed == nil {
		e.Failed = map[int]error{}
	}
	e.Failed[i] = err
}

// Error lists the failed indexes and their errors, in index order.
func (e *BatchError) Error() string {
	idx := e.indexes()
	var b strings.Builder
	if len(idx) == 1 {
		b.WriteString("zkafka: 1 message of the batch failed")
	} else {
		fmt.Fprintf(&b, "zkafka: %d messages of the batch failed", len(idx))
	}
	for i, k := range idx {
		if i == 5 {
			fmt.Fprintf(&b, "; and %d more", len(idx)-i)
			break
		}
		fmt.Fprintf(&b, "; [%d]: %v", k, e.Failed[k])
	}
	return b.String()
}

// Unwrap returns the errors of the failed messages, in index order, so that errors.Is and
// errors.As look into them.
func (e *BatchError) Unwrap() []error {
	idx := e.indexes()
	out := make([]error, 0, len(idx))
	for _, k := range idx {
		out = append(out, e.Failed[k])
	}
	return out
}

// failed returns Failed; nil for a nil e.
func (e *BatchError) failed() map[int]error {
	if e == nil {
		return nil
	}
	return e.Failed
}

// indexes returns the indexes of the failed messages, in order.
func (e *BatchError) indexes() []int {
	out := make([]int, 0, len(e.Failed))
	for k, err := range e.Failed {
		if err != nil {
			out = append(out, k)
		}
	}
	sort.Ints(out)
	return out
}
