package zkafka

// What became of a Work's failed messages: the counts behind Status.Failures, and the log
// line of a failed message (G18: a retry is logged at debug level only, the last failure at
// warning level: the first of its kind at once, the others summarised every 30 s).
//
// Invariant: each counter only grows; a message adds to Permanent at most once, to exactly one
// of DeadLettered and Skipped when it fails for good and is finished, and to Retried once per
// retry. The processors' complete and park (processor.go) update them.

import (
	"context"
	"errors"
	"sync/atomic"
)

// FailureCounts counts what became of a Work's failed messages since the Work was created.
// Each field only grows, ready to be exported as a metric counter.
type FailureCounts struct {
	// Retried counts the runs of the processor that failed with a transient error and were
	// followed by a retry (WithRetry).
	Retried int64 `json:"retried"`
	// Permanent counts the messages that failed with an error that is their own fault
	// (IsPermanentError: PermanentError, a Decode error, a panic): not retried, not counted by
	// the circuit breaker.
	Permanent int64 `json:"permanent"`
	// DeadLettered counts the failed messages whose dead letter the broker acknowledged.
	DeadLettered int64 `json:"dead_lettered"`
	// Skipped counts the failed messages marked finished without a dead letter: the Work has no
	// dead letter topic, or the error is a ProcessError with DisableDLTWrite.
	Skipped int64 `json:"skipped"`
	// PoisonPills counts the messages not run again because the process died with them in
	// the handler PoisonPillAfter times in a row; each is also counted as Permanent and as
	// DeadLettered or Skipped.
	PoisonPills int64 `json:"poison_pills"`
}

// failureCounts returns the counts of this Work's failed messages, over all its runs
// (Status.Failures).
func (w *Work) failureCounts() FailureCounts {
	c := &w.failures
	return FailureCounts{
		Retried:      c.retried.Load(),
		Permanent:    c.permanent.Load(),
		DeadLettered: c.deadLettered.Load(),
		Skipped:      c.skipped.Load(),
		PoisonPills:  c.poisonPills.Load(),
	}
}

// failureCounters is the live form of FailureCounts.
type failureCounters struct {
	retried, permanent, deadLettered, skipped, poisonPills atomic.Int64
}

// failed logs the last failure of m and counts it: toDLT says whether a dead letter is written
// next (counted once acknowledged), else the message is skipped. The line goes through the
// run's failure log: the first failure of a kind (the line, the topic, the error class) is
// written at once, later ones are summarised every failureSummaryEvery with their count and
// the last one's fields, so a burst of bad data is not a flood of lines.
func (c *failureCounters) failed(ctx context.Context, l *failureLog, m *Message, err error, class errClass, toDLT bool) {
	if class == classPermanent {
		c.permanent.Add(1)
	}
	msg := "zkafka: processing failed; writing a dead letter"
	if !toDLT {
		c.skipped.Add(1)
		msg = "zkafka: processing failed; skipping the message (no dead letter)"
	}
	if discards(l.logger) {
		return // the line's fields cost four allocations for every failed message
	}
	key := msg + "\x00" + m.Topic + "\x00" + class.String()
	var first []any
	if pe, ok := errors.AsType[*panicError](err); ok {
		key += "\x00panic"
		first = []any{"stack", string(pe.stack)}
	}
	l.logFirst(ctx, levelWarn, key, msg, []any{"topic", m.Topic, "partition", m.Partition, "offset", m.Offset,
		"class", class.String(), "attempts", m.Attempt(), "error", err}, first)
}
