package zkafka

// One dead letter's write (deadLetter), and its first attempt, made without a goroutine (G5):
// the processor hands the record to the cached writer's producer (queuedRecord,
// producer.go) and goes on; the acknowledgement arrives on the writer's drain goroutine,
// which finishes the message. Only a first attempt that fails — a refused, failed or
// unacknowledged record — goes on in a goroutine of the writer's (deadLetterWriter.write,
// from its second attempt), with the retries and backoff of deadletter.go. A goroutine per
// dead letter that waited for its acknowledgement made a run where one message in ten fails
// run at 0.6 of the speed of one where none does (make bench, deadletter-s8); its wake-ups,
// timers and stack were most of the cost.
//
// A deadLetter is one allocation for the whole write: its place among the writer's pending
// writes, its progress, its headers (their values in one buffer) and the record and
// kafka.Message of its first attempt. The pending writes are a slice in which each knows its
// index, not maps: a map insert and delete per dead letter, for the pending writes and again
// for the queued attempts, with the closures, the headers and the record each allocated on
// their own, were a third of the library's own CPU per dead letter (make bench with every
// message failing).
//
// An attempt ends once: acknowledged (written), failed or timed out (handed to write), or cut
// (the writer's context ended: the stop's grace is over, an abrupt stop, or close; the message
// stays unfinished). take decides which comes first; a report that comes after is dropped.

import (
	"context"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/trace"
)

// queuedSweepEvery is how often the dead letter writer looks for queued attempts that have
// waited deadLetterAttemptTimeout, or whose writer was closed; such an attempt may so wait up
// to that much longer than deadLetterAttemptTimeout.
const queuedSweepEvery = time.Second

// deadLetterOwner is told how the write of a message's dead letter goes: failing when its
// first attempt failed and it is retried (on a goroutine of the writer's), ended once with
// whether it was written, before the write counts as ended (wait, pendingWith).
type deadLetterOwner interface {
	failing()
	ended(written bool)
}

// Inline room of a deadLetter: the headers of a message with up to one header of its own, and
// the values of the zkafka-* headers when they fit (a longer error message gets a buffer).
const (
	deadLetterInlineHeaders = 8
	deadLetterInlineValues  = 256
)

// deadLetter is the write of one failed message's dead letter.
type deadLetter struct {
	d       *deadLetterWriter
	ctx     context.Context // the message's
	cut     waitCut
	m       *Message
	owner   deadLetterOwner
	headers []kafka.Header

	// Guarded by d.mu.
	idx      int                // in d.pending; -1 once the write ended
	progress deadLetterProgress // for Work.Status
	queued   bool               // the first attempt is with the producer and not yet taken

	// The first attempt, queued.
	kw      *KWriter
	expires time.Time
	rec     queuedRecord
	msg     kafka.Message

	hdrs   [deadLetterInlineHeaders]kafka.Header
	values [deadLetterInlineValues]byte
}

// queue adds l to the writer's pending writes and makes its first attempt through the cached
// writer, without waiting. It reports false, having made none, when it cannot (no cached
// writer, the stop has begun, the writer's context ended, or the writer cannot queue:
// queuedRecord.queue); the caller then writes in a goroutine. When the writer's context ended
// meanwhile (watch took the attempt), it reports true: the write has ended.
func (l *deadLetter) queue(now time.Time) bool {
	d := l.d
	kw := d.cached.Load()
	select {
	case <-d.rs.stopping: // the attempts of a stop have deadlines of their own (write)
		kw = nil
	default:
	}
	d.mu.Lock()
	l.idx = len(d.pending)
	d.pending = append(d.pending, l)
	if kw == nil || d.cutAll {
		d.mu.Unlock()
		return false
	}
	l.queued, l.kw, l.expires = true, kw, now.Add(deadLetterAttemptTimeout)
	d.mu.Unlock()
	base := d.ctx // as write's attempts: the span of the processing, not its cancellation
	if span := trace.SpanContextFromContext(l.ctx); span.IsValid() {
		base = trace.ContextWithSpanContext(base, span)
	}
	l.rec = queuedRecord{w: kw, ctx: base, to: l}
	if l.rec.queue(&l.msg, l.m.key(), l.m.value, l.headers) {
		return true
	}
	return !l.take()
}

// take ends l's queued attempt and reports whether it was still on: only the first of its
// acknowledgement, failure, timeout and cut ends it.
func (l *deadLetter) take() bool {
	d := l.d
	d.mu.Lock()
	defer d.mu.Unlock()
	on := l.queued
	l.queued = false
	return on
}

// delivered ends the attempt with the broker's answer (on the writer's drain goroutine).
func (l *deadLetter) delivered(err error) {
	if !l.take() {
		return
	}
	if err == nil {
		l.d.end(l, true)
		return
	}
	l.retry(err)
}

// retry goes on with l's write in a goroutine of the writer's, its first attempt failed with err.
func (l *deadLetter) retry(err error) {
	d := l.d
	d.cached.CompareAndSwap(l.kw, nil) // the next attempt asks the Client again, as send does
	d.run(func() { d.end(l, d.write(l, err)) })
}

// queuedAttempts are the first attempts of one dead letter writer that are with the producer:
// its pending writes whose deadLetter.queued is set.
type queuedAttempts struct{ d *deadLetterWriter }

// watch runs for the writer's life: it hands attempts that timed out, or whose writer was
// closed, to retry; it ends d.ctx deadLetterStopGrace after the stop began, so that a write
// the broker does not acknowledge (a retriable outage: the producer retries on its own)
// cannot hold a graceful stop for a whole attempt timeout; and once d.ctx has ended, it ends
// the queued attempts left, unwritten.
func (q queuedAttempts) watch() {
	d := q.d
	tick := time.NewTicker(queuedSweepEvery)
	defer tick.Stop()
	stopping := d.rs.stopping
	var grace <-chan time.Time
	for {
		select {
		case now := <-tick.C:
			q.sweep(now)
		case <-stopping:
			stopping = nil
			t := time.NewTimer(deadLetterStopGrace)
			defer t.Stop()
			grace = t.C
		case <-grace:
			d.cancel()
		case <-d.ctx.Done():
			d.mu.Lock()
			d.cutAll = true
			left := q.take(func(*deadLetter) bool { return true })
			d.mu.Unlock()
			for _, l := range left {
				d.unwritten(l.m, nil)
				d.end(l, false)
			}
			return
		}
	}
}

// sweep hands the queued attempts that timed out by now, or whose writer was closed, to retry.
func (q queuedAttempts) sweep(now time.Time) {
	d := q.d
	d.mu.Lock()
	over := q.take(func(l *deadLetter) bool { return now.After(l.expires) || l.kw.isClosed() })
	d.mu.Unlock()
	for _, l := range over {
		err := fmt.Errorf("zkafka: writing to topic %s: %w before the delivery report arrived", l.kw.topic, errWriterClosed)
		if !l.kw.isClosed() {
			err = fmt.Errorf("zkafka: writing to topic %s: no delivery report within %s: %w", l.kw.topic, deadLetterAttemptTimeout, context.DeadlineExceeded)
		}
		l.retry(err)
	}
}

// take takes the queued attempts for which over is true (deadLetter.take); d.mu is held.
func (q queuedAttempts) take(over func(*deadLetter) bool) []*deadLetter {
	var out []*deadLetter
	for _, l := range q.d.pending {
		if l.queued && over(l) {
			l.queued = false
			out = append(out, l)
		}
	}
	return out
}
