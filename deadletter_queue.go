package zkafka

// The first attempt of a dead letter, made without a goroutine (G5): the processor hands the
// record to the cached writer's producer (queuedRecord, writer_queue.go) and goes on; the
// acknowledgement arrives on the writer's drain goroutine, which finishes the message. Only a
// first attempt that fails — a refused, failed or unacknowledged record — goes on in a
// goroutine of the writer's (deadLetterWriter.write, from its second attempt), with the
// retries and backoff of deadletter.go. A goroutine per dead letter that waited for its
// acknowledgement made a run where one message in ten fails run at 0.6 of the speed of one
// where none does (make bench, deadletter-s8); its wake-ups, timers and stack were most of
// the cost.
//
// An attempt ends once: acknowledged (written), failed or timed out (handed to write), or cut
// (the writer's context ended: the stop's grace is over, an abrupt stop, or close; the message
// stays unfinished). take decides which comes first; a report that comes after is dropped.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/trace"
)

// queuedSweepEvery is how often the dead letter writer looks for queued attempts that have
// waited deadLetterAttemptTimeout, or whose writer was closed; such an attempt may so wait up
// to that much longer than deadLetterAttemptTimeout.
const queuedSweepEvery = time.Second

// queuedLetters are the first attempts of one dead letter writer that are with the producer.
type queuedLetters struct {
	d      *deadLetterWriter
	mu     sync.Mutex
	live   map[*queuedLetter]struct{}
	closed bool // the writer's context ended: no new attempt is queued
}

// queuedLetter is the first attempt of one dead letter.
type queuedLetter struct {
	q       *queuedLetters
	ctx     context.Context // the message's, as write gets it
	cut     waitCut
	m       *Message
	headers []kafka.Header
	failing func()
	then    func(written bool)
	kw      *KWriter
	expires time.Time
}

// queue makes the first attempt of m's dead letter through the cached writer, without waiting.
// It reports false, having made none, when it cannot (no cached writer, the stop has begun, or
// the writer cannot queue: queuedRecord.queue); the caller then writes in a goroutine.
func (q *queuedLetters) queue(ctx context.Context, cut waitCut, m *Message, headers []kafka.Header, failing func(), then func(bool)) bool {
	d := q.d
	kw := d.cached.Load()
	if kw == nil {
		return false
	}
	select {
	case <-d.rs.stopping: // the attempts of a stop have deadlines of their own (write)
		return false
	default:
	}
	l := &queuedLetter{q: q, ctx: ctx, cut: cut, m: m, headers: headers, failing: failing, then: then, kw: kw,
		expires: time.Now().Add(deadLetterAttemptTimeout)}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.live[l] = struct{}{}
	q.mu.Unlock()
	base := d.ctx // as write's attempts: the span of the processing, not its cancellation
	if span := trace.SpanContextFromContext(ctx); span.IsValid() {
		base = trace.ContextWithSpanContext(base, span)
	}
	rec := &queuedRecord{w: kw, ctx: base, to: l}
	if rec.queue(m.key(), m.value, headers) {
		return true
	}
	q.take(l)
	return false
}

// take removes l from the live attempts and reports whether it was still there: only the
// first of its acknowledgement, failure, timeout and cut ends it.
func (q *queuedLetters) take(l *queuedLetter) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, live := q.live[l]
	delete(q.live, l)
	return live
}

// delivered ends the attempt with the broker's answer (on the writer's drain goroutine).
func (l *queuedLetter) delivered(err error) {
	q := l.q
	if !q.take(l) {
		return
	}
	if err == nil {
		q.d.end(l.m, l.then, true)
		return
	}
	q.retry(l, err)
}

// retry goes on with l's write in a goroutine of the writer's, its first attempt failed with err.
func (q *queuedLetters) retry(l *queuedLetter, err error) {
	d := q.d
	d.cached.CompareAndSwap(l.kw, nil) // the next attempt asks the Client again, as send does
	d.run(func() { d.end(l.m, l.then, d.write(l.ctx, l.cut, l.m, l.headers, l.failing, err)) })
}

// watch runs for the writer's life: it hands attempts that timed out, or whose writer was
// closed, to retry; it ends d.ctx deadLetterStopGrace after the stop began, so that a write
// the broker does not acknowledge (a retriable outage: the producer retries on its own)
// cannot hold a graceful stop for a whole attempt timeout; and once d.ctx has ended, it ends
// the attempts left, unwritten.
func (q *queuedLetters) watch() {
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
			q.mu.Lock()
			q.closed = true
			left := q.live
			q.live = nil
			q.mu.Unlock()
			for l := range left {
				d.unwritten(l.ctx, l.m)
				d.end(l.m, l.then, false)
			}
			return
		}
	}
}

// sweep hands the attempts that timed out by now, or whose writer was closed, to retry.
func (q *queuedLetters) sweep(now time.Time) {
	var over []*queuedLetter
	q.mu.Lock()
	for l := range q.live {
		if now.After(l.expires) || l.kw.isClosed() {
			over = append(over, l)
			delete(q.live, l)
		}
	}
	q.mu.Unlock()
	for _, l := range over {
		err := fmt.Errorf("zkafka: writing to topic %s: %w before the delivery report arrived", l.kw.topic, errWriterClosed)
		if !l.kw.isClosed() {
			err = fmt.Errorf("zkafka: writing to topic %s: no delivery report within %s: %w", l.kw.topic, deadLetterAttemptTimeout, context.DeadlineExceeded)
		}
		q.retry(l, err)
	}
}
