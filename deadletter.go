package zkafka

// The dead letter path (G5): a failed message is written, with its original key, value and
// headers plus the zkafka-* headers, to the dead letter topic, and is finished only once the
// broker acknowledged the write. A failed write is retried with capped exponential backoff for
// as long as it takes; the message's offset waits meanwhile. A stop or a revoke of the
// message's partition ends the retries, and the message stays unfinished (it is read again).
//
// No processor waits for a dead letter: the first attempt is handed to the producer without
// a goroutine (deadletter_queue.go), and the writer's drain goroutine finishes the message
// when the broker acknowledges it; an attempt that fails goes on in a goroutine of its own
// (start, write). Waiting held a virtual partition for a broker round trip per failure, and a
// run where one message in ten fails ran at 0.3 of the speed of one where none does; a
// goroutine per dead letter that waited, at 0.6. The message stays in flight meanwhile: not
// finished, counted in the in-flight bound, its key still routed to its virtual partition. A
// revoke waits for the writes of its partitions (pendingWith) as it waits for running
// handlers, and a stop for all of them (wait). The Work's OnDone callbacks of a dead-lettered
// message run on the goroutine that learns of the acknowledgement.
//
// While a write of a virtual partition's message is failing, that virtual partition takes no
// new message (processor.go): waiting out an outage of the dead letter topic
// there, as when every write held its processor, keeps the work done but not committable
// small (a crash redoes it all).
//
// The dead letter producer batches for deadLetterLingerMs and has confluent-kafka-go channels
// of deadLetterChannelSizes rather than a million entries each (deadLetterConfig; its
// AdditionalProps win). The processors (processor.go, complete) call start; the producer comes from the
// Client's writer cache (client.go, writer.go) and closes with the Client.

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Headers a dead letter carries besides the original message's own (G5).
const (
	HeaderOriginalTopic     = "zkafka-original-topic"
	HeaderOriginalPartition = "zkafka-original-partition"
	HeaderOriginalOffset    = "zkafka-original-offset"
	HeaderOriginalTimestamp = "zkafka-original-timestamp"
	HeaderOriginalGroup     = "zkafka-original-group"
	HeaderError             = "zkafka-error"
	// HeaderAttempt counts the runs of the processor a message has had, over a retry chain:
	// the runs in this Work (1, or up to RetryPolicy.MaxAttempts with WithRetry), plus the
	// value the message already carried when it was itself a dead letter.
	HeaderAttempt = "zkafka-attempt"
)

// Dead letter write retries: capped exponential backoff from deadLetterMinBackoff, doubling
// up to deadLetterMaxBackoff, for as long as it takes. Each attempt waits at most
// deadLetterAttemptTimeout for the broker's acknowledgement. Once a graceful stop begins, a
// failed attempt is not retried, an attempt in flight gets at most deadLetterStopGrace more,
// and an attempt started during the stop (a message of the drain failed) gets
// deadLetterStopGrace in all. A message whose dead letter is not acknowledged in time stays
// uncommitted (its dead letter may still be delivered by the producer, and is written again
// when the message is read again).
const (
	deadLetterMinBackoff     = 100 * time.Millisecond
	deadLetterMaxBackoff     = 10 * time.Second
	deadLetterAttemptTimeout = 10 * time.Second
	deadLetterStopGrace      = 2 * time.Second
	// deadLetterIdle is how long a goroutine that wrote a dead letter waits for the next one.
	deadLetterIdle = time.Second
)

// rawWriter is implemented by KWriter: it writes bytes and headers as they are.
type rawWriter interface {
	writeMessage(ctx context.Context, key []byte, value []byte, headers []kafka.Header) (Response, error)
}

// deadLetterRun is what the dead letter writer needs of the Run it belongs to.
type deadLetterRun struct {
	ctx        context.Context // the Run's: cancelled at an abrupt stop
	stopping   <-chan struct{} // closed when the Run's stop begins
	group      string
	logger     Logger
	failures   *failureLog                   // the Run's: failed attempts are rate-limited
	propagator propagation.TextMapPropagator // nil: no trace context in the dead letter
	metrics    *workMetrics                  // nil: no metrics
}

// deadLetterWriter writes failed messages of one Run to the dead letter topic. Writes of
// different virtual partitions run concurrently: each waits only for its own acknowledgement.
//
// Guards: the processors (start), the writing goroutines, the producer's drain goroutine (a
// queued attempt's report), the watch goroutine (queuedAttempts.watch), revokes and
// Work.Status use it at once. rs, cp, cfg, topic, ctx, cancel and idle are immutable once
// newDeadLetterWriter returned.
type deadLetterWriter struct {
	rs deadLetterRun
	// cp is asked for the writer at every attempt, as zkafka v2 does; but the writer a Client
	// gave is kept (cached) until it is closed or an attempt with it fails.
	cp    ClientProvider
	cfg   ProducerTopicConfig // the dead letter producer's, inherited from the consumer's
	topic string
	// ctx ends with the run's context, deadLetterStopGrace after a graceful stop began, or at
	// close; it cuts attempts that were in flight when the stop began.
	ctx    context.Context
	cancel context.CancelFunc

	wg     sync.WaitGroup          // one per write started and not yet ended
	idle   chan func()             // unbuffered: the writing goroutines waiting for their next write
	cached atomic.Pointer[KWriter] // atomic
	mu     sync.Mutex              // guards pending, revokes, cutAll, dropped and the guarded fields of each deadLetter
	// pending are the writes started and not ended, each at its deadLetter.idx. Guarded by mu.
	pending []*deadLetter
	revokes chan struct{} // guarded by mu; closed and replaced at every revoke: writes in backoff look up
	cutAll  bool          // guarded by mu; the writer's context ended: no first attempt is queued (watch)
	// dropped are the messages whose dead letter a graceful stop gave up on; close logs them
	// in one line. Guarded by mu.
	dropped droppedLetters
}

// droppedLetters are the messages whose dead letter a stop left unwritten, for one summary
// line instead of a line each.
type droppedLetters struct {
	count   int
	offsets []string // "topic/partition:offset", the first maxDroppedListed
	last    error    // the last attempt's error, if any
}

// maxDroppedListed bounds the offsets the stop's summary line lists.
const maxDroppedListed = 20

// queued are d's first attempts with the producer (deadletter_queue.go).
func (d *deadLetterWriter) queued() queuedAttempts { return queuedAttempts{d} }

// deadLetterProgress is how far the write of one dead letter has come, for Work.Status.
type deadLetterProgress struct {
	since   time.Time // when the write began
	failed  int       // attempts that failed so far
	cause   error     // the last failed attempt's error
	retryAt time.Time // when the next attempt starts, after a failed one
}

// deadLetterConfig fills what the dead letter config leaves unset from the consumer's config:
// ClientID, bootstrap servers, SASL credentials, and the consumer's AdditionalProps that say
// how to reach the brokers (isConnectionKey: TLS and SASL settings made through
// AdditionalProps), so that a dead letter producer connects wherever its consumer does. It
// also raises the producer's record limit, batches for deadLetterLingerMs and shrinks the
// producer's channels (deadLetterChannelSizes) unless the dead letter config says otherwise.
func deadLetterConfig(tc ConsumerTopicConfig, dlt ProducerTopicConfig) ProducerTopicConfig {
	if dlt.ClientID == "" {
		dlt.ClientID = tc.ClientID
	}
	if len(dlt.BootstrapServers) == 0 {
		dlt.BootstrapServers = tc.BootstrapServers
	}
	ownSASL := dlt.SaslUsername != nil || dlt.SaslPassword != nil
	if !ownSASL {
		dlt.SaslUsername, dlt.SaslPassword = tc.SaslUsername, tc.SaslPassword
	}
	props := make(map[string]any, len(dlt.AdditionalProps)+1)
	for k, v := range tc.AdditionalProps {
		if isConnectionKey(k) && (!ownSASL || !strings.HasPrefix(k, "sasl.")) {
			// Credentials of its own are not mixed with the consumer's sasl.* keys.
			props[k] = v
		}
	}
	for k, v := range dlt.AdditionalProps {
		props[k] = v // the dead letter config's own keys win
	}
	if _, set := props[keyMessageMaxBytes]; !set {
		// librdkafka's producer refuses records over 1,000,000 bytes by itself, and a refused
		// dead letter is retried forever: raise its limit to what a consumer can have read.
		// The dead letter topic's own max.message.bytes must allow it too.
		props[keyMessageMaxBytes] = deadLetterMaxMessageBytes
	}
	if _, set := props[keyLingerMs]; !set && dlt.LingerMillis == 0 {
		// No processor waits for a dead letter (start), so batching them costs only the
		// linger before the offset moves (commits run every commitEvery anyway); without it
		// every dead letter is a request of its own. A longer linger means fewer produce
		// requests for the broker and fewer bursts of delivery reports for the worker
		// (docs/performance.md has deadletter-s8's figures).
		props[keyLingerMs] = deadLetterLingerMs
	}
	for k, v := range deadLetterChannelSizes {
		if _, set := props[k]; !set {
			props[k] = v
		}
	}
	dlt.AdditionalProps = props
	return dlt
}

// isConnectionKey reports whether a librdkafka key describes how to reach and authenticate to
// the brokers rather than how to consume: such keys of a consumer's AdditionalProps carry over
// to its dead letter producer.
func isConnectionKey(k string) bool {
	switch k {
	case "security.protocol", "broker.address.family", "client.dns.lookup":
		return true
	}
	return strings.HasPrefix(k, "ssl.") || strings.HasPrefix(k, "sasl.")
}

// Dead letter producer limit on one record (message.max.bytes), unless the dead letter config's
// AdditionalProps set it: librdkafka's default fetch.max.bytes, the most a consumer reads at
// once, so any message read can be dead-lettered.
const (
	keyMessageMaxBytes        = "message.max.bytes"
	deadLetterMaxMessageBytes = 52428800
)

// Dead letter producer linger.ms, unless LingerMillis or AdditionalProps set it (the library's
// producers otherwise set 0): a dead letter's offset may wait that much longer, and a graceful
// stop as much for the last ones.
const (
	keyLingerMs        = "linger.ms"
	deadLetterLingerMs = 50
)

// deadLetterChannelSizes are the dead letter producer's confluent-kafka-go channel sizes,
// unless AdditionalProps set them. Both default to 1,000,000 entries, allocated at once (24 MB
// of pointers); the writer never uses the produce channel, and the events channel carries
// errors, logs and the delivery reports of queued dead letters, which the writer's drain
// goroutine takes at once (a full channel only makes librdkafka's poller wait). make bench,
// deadletter-s8: peak RSS 130 MB instead of 160, the same CPU.
var deadLetterChannelSizes = map[string]any{"go.events.channel.size": 10000, "go.produce.channel.size": 1}

// newDeadLetterWriter prepares the dead letter path of a Run. The writer itself is asked of the
// Work's ClientProvider at every attempt, as zkafka v2 does (the Client caches it, and replaces
// one that was closed); a failure to get it is retried like a failed write. From the Client
// the writer is also got now, so that the first dead letter does not wait for a new producer
// and a configuration the Client refuses fails the Run at once.
func newDeadLetterWriter(ctx context.Context, w *Work, rs deadLetterRun) (*deadLetterWriter, error) {
	cfg := deadLetterConfig(w.topicConfig, *w.dlt)
	if cfg.Topic == "" {
		return nil, errConfig("dead letter ProducerTopicConfig.Topic is empty")
	}
	d := &deadLetterWriter{rs: rs, cp: w.cp, cfg: cfg, topic: cfg.Topic, revokes: make(chan struct{}), idle: make(chan func())}
	if c, ok := w.cp.(*Client); ok {
		writer, err := c.Writer(ctx, cfg)
		if err != nil {
			return nil, wrapErr(err, "creating the dead letter writer")
		}
		if kw, ok := writer.(*KWriter); ok {
			d.cached.Store(kw)
		}
	}
	d.ctx, d.cancel = context.WithCancel(rs.ctx)
	go d.queued().watch()
	return d, nil
}

// appendDeadLetterHeaders appends to out the original headers plus the zkafka-* ones (which
// replace original headers of the same names). The values of the zkafka-* ones share one
// buffer: buf when it has the room, else a new one.
func appendDeadLetterHeaders(out []kafka.Header, buf []byte, m *Message, group string, cause error) []kafka.Header {
	attempt := m.Attempt()
	if prev, ok := m.Headers[HeaderAttempt]; ok {
		if n, err := strconv.Atoi(string(prev)); err == nil && n >= 0 {
			attempt += n
		}
	}
	for k, v := range m.Headers {
		if !isDeadLetterHeader(k) {
			out = append(out, kafka.Header{Key: k, Value: v})
		}
	}
	msg := cause.Error()
	if need := len(m.Topic) + len(group) + len(msg) + 80; cap(buf) < need {
		buf = make([]byte, 0, need)
	}
	buf = buf[:0]
	var ends [7]int
	buf = append(buf, m.Topic...)
	ends[0] = len(buf)
	buf = strconv.AppendInt(buf, int64(m.Partition), 10)
	ends[1] = len(buf)
	buf = strconv.AppendInt(buf, m.Offset, 10)
	ends[2] = len(buf)
	buf = m.TimeStamp.AppendFormat(buf, time.RFC3339Nano)
	ends[3] = len(buf)
	buf = append(buf, group...)
	ends[4] = len(buf)
	buf = append(buf, msg...)
	ends[5] = len(buf)
	buf = strconv.AppendInt(buf, int64(attempt), 10)
	ends[6] = len(buf)
	keys := [7]string{HeaderOriginalTopic, HeaderOriginalPartition, HeaderOriginalOffset, HeaderOriginalTimestamp,
		HeaderOriginalGroup, HeaderError, HeaderAttempt}
	start := 0
	for i, k := range keys {
		out = append(out, kafka.Header{Key: k, Value: buf[start:ends[i]:ends[i]]})
		start = ends[i]
	}
	return out
}

// isDeadLetterHeader reports whether k is one of the headers a dead letter sets itself.
func isDeadLetterHeader(k string) bool {
	switch k {
	case HeaderOriginalTopic, HeaderOriginalPartition, HeaderOriginalOffset, HeaderOriginalTimestamp,
		HeaderOriginalGroup, HeaderError, HeaderAttempt:
		return true
	}
	return false
}

// start writes m's dead letter, queued without waiting (deadletter_queue.go) or else in a
// goroutine of its own, and tells owner how it goes.
func (d *deadLetterWriter) start(ctx context.Context, cut waitCut, m *Message, cause error, owner deadLetterOwner) {
	now := time.Now()
	l := &deadLetter{d: d, ctx: ctx, cut: cut, m: m, owner: owner, progress: deadLetterProgress{since: now}}
	l.headers = d.headers(l, cause)
	d.wg.Add(1)
	if !l.queue(now) {
		d.run(func() { d.end(l, d.write(l, nil)) })
	}
}

// end ends the write of l: its owner is told whether it was written, then the write counts as
// ended.
func (d *deadLetterWriter) end(l *deadLetter, written bool) {
	l.owner.ended(written)
	d.mu.Lock()
	last := len(d.pending) - 1
	moved := d.pending[last]
	d.pending[l.idx], moved.idx = moved, l.idx
	d.pending[last] = nil
	d.pending = d.pending[:last]
	l.idx = -1
	d.mu.Unlock()
	d.wg.Done()
}

// unwritten notes that m's dead letter was given up on because the run stops (quietly when it
// was cancelled); close logs them all in one line. err is the last attempt's, if any.
func (d *deadLetterWriter) unwritten(m *Message, err error) {
	if d.rs.ctx.Err() != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropped.count++
	if len(d.dropped.offsets) < maxDroppedListed {
		d.dropped.offsets = append(d.dropped.offsets, m.Topic+"/"+strconv.Itoa(int(m.Partition))+":"+strconv.FormatInt(m.Offset, 10))
	}
	if err != nil {
		d.dropped.last = err
	}
}

// logDropped writes the one line of the dead letters the stop left unwritten, if any.
func (d *deadLetterWriter) logDropped() {
	d.mu.Lock()
	dropped := d.dropped
	d.dropped = droppedLetters{}
	d.mu.Unlock()
	if dropped.count == 0 {
		return
	}
	kv := []any{"dead_letter_topic", d.topic, "count", dropped.count, "offsets", strings.Join(dropped.offsets, ",")}
	if dropped.count > len(dropped.offsets) {
		kv = append(kv, "not_listed", dropped.count-len(dropped.offsets))
	}
	if dropped.last != nil {
		kv = append(kv, "error", dropped.last)
	}
	d.rs.logger.Warnw(context.Background(), "zkafka: stopped with dead letters unwritten; their messages stay uncommitted and are read again", kv...)
}

// headers are the headers of l's dead letter, in l's inline room when they fit:
// appendDeadLetterHeaders, and the trace context when the run has a propagator.
func (d *deadLetterWriter) headers(l *deadLetter, cause error) []kafka.Header {
	headers := appendDeadLetterHeaders(l.hdrs[:0], l.values[:0], l.m, d.rs.group, cause)
	if p := d.rs.propagator; p != nil {
		carrier := map[string][]byte{}
		p.Inject(l.ctx, msgCarrier(carrier))
		for k, v := range carrier {
			headers = replaceHeader(headers, k, v)
		}
	}
	return headers
}

// run runs write on a goroutine of the writer's: an idle one when there is one, else a new
// one. A goroutine that has written waits deadLetterIdle for another write before it exits:
// a goroutine per dead letter spent a quarter of the dead letter path's CPU growing its new
// stack (make bench, deadletter-s8).
func (d *deadLetterWriter) run(write func()) {
	select {
	case d.idle <- write:
	default:
		go d.writing(write)
	}
}

// writing runs write, then the writes handed to it while it is idle, until it has been idle
// for deadLetterIdle or the writer closes.
func (d *deadLetterWriter) writing(write func()) {
	t := time.NewTimer(deadLetterIdle)
	defer t.Stop()
	for {
		write()
		t.Reset(deadLetterIdle)
		select {
		case write = <-d.idle:
		case <-t.C:
			return
		case <-d.ctx.Done():
			return
		}
	}
}

// pendingWith reports whether a write for a message for which in is true has not ended.
func (d *deadLetterWriter) pendingWith(in func(*Message) bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range d.pending {
		if in(l.m) {
			return true
		}
	}
	return false
}

// revoked wakes the writes waiting out a backoff, to see whether their partition is revoked.
func (d *deadLetterWriter) revoked() {
	d.mu.Lock()
	close(d.revokes)
	d.revokes = make(chan struct{})
	d.mu.Unlock()
}

// revokeSignal returns the channel the next revoke closes.
func (d *deadLetterWriter) revokeSignal() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.revokes
}

// failed records the failed attempt of l's write and when the next one starts.
func (d *deadLetterWriter) failed(l *deadLetter, attempt int, err error, backoff time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := &l.progress
	p.failed, p.cause, p.retryAt = attempt, err, time.Now().Add(backoff)
}

// lookFor shows l the messages it looks for whose dead letter is being written (Work.Status).
func (d *deadLetterWriter) lookFor(l *lookup) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, dl := range d.pending {
		if m, p := dl.m, dl.progress; l.wants(m) {
			l.see(sighting{m: m, vp: m.vp, waits: WaitDeadLetter, since: p.since, until: p.retryAt, failures: p.failed, cause: p.cause})
		}
	}
}

// wait waits until every write started has ended.
func (d *deadLetterWriter) wait() { d.wg.Wait() }

// write writes l's dead letter and waits for the broker's acknowledgement, retrying with
// backoff (G5). A non-nil first is the error of a first attempt already made (queued): write
// goes on from the second. It returns false when it gave up because the run is stopping or
// the partition is being revoked: the message then stays unfinished and is read again later.
func (d *deadLetterWriter) write(l *deadLetter, first error) bool {
	rs, ctx, cut, m := d.rs, l.ctx, l.cut, l.m
	// Each attempt ends with the run's context, not the message's, but keeps the processing
	// span as its parent so that a writer with a tracer stays in the message's trace. Until
	// the stop begins it also ends with d.ctx, deadLetterStopGrace after the stop began.
	span := trace.SpanContextFromContext(ctx)
	backoff := deadLetterMinBackoff
	for attempt := 1; ; attempt++ {
		timeout, base := deadLetterAttemptTimeout, d.ctx
		select {
		case <-rs.stopping:
			timeout, base = deadLetterStopGrace, rs.ctx
		default:
		}
		if span.IsValid() {
			base = trace.ContextWithSpanContext(base, span)
		}
		err := first
		if attempt > 1 || first == nil {
			wctx, cancel := context.WithTimeout(base, timeout)
			_, err = d.send(wctx, m, l.headers)
			cancel()
		}
		if err == nil {
			if attempt > 1 {
				rs.logger.Infow(ctx, "zkafka: dead letter written after retries", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "dead_letter_topic", d.topic, "attempts", attempt)
			}
			return true
		}
		if rs.ctx.Err() != nil {
			return false
		}
		select {
		case <-rs.stopping:
			d.unwritten(m, err)
			return false
		default:
		}
		if attempt == 1 {
			l.owner.failing()
		}
		rs.metrics.deadLetterRetry(m)
		const failed = "zkafka: writing dead letter failed; the offset waits and the write is retried"
		rs.failures.log(ctx, levelError, failed+"\x00"+failureKey(err), failed,
			"topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "dead_letter_topic", d.topic, "attempt", attempt, "retry_in", backoff.String(), "error", err)
		d.failed(l, attempt, err, backoff)
		t := time.NewTimer(backoff)
		revokes := d.revokeSignal()
		select {
		case <-t.C:
		case <-revokes:
			t.Stop()
		case <-rs.stopping:
			t.Stop()
			d.unwritten(m, err)
			return false
		case <-rs.ctx.Done():
			t.Stop()
			return false
		case <-cut.kick:
			t.Stop()
		}
		if cut.revoked() || (m.trk != nil && m.trk.Closed()) {
			return false
		}
		backoff = min(2*backoff, deadLetterMaxBackoff)
	}
}

// send makes one attempt and waits for its acknowledgement.
func (d *deadLetterWriter) send(ctx context.Context, m *Message, headers []kafka.Header) (Response, error) {
	if kw := d.cached.Load(); kw != nil && !kw.isClosed() {
		resp, err := kw.writeMessage(ctx, m.key(), m.value, headers)
		if err != nil {
			d.cached.CompareAndSwap(kw, nil) // the next attempt asks the Client again
		}
		return resp, err
	}
	writer, err := d.cp.Writer(ctx, d.cfg)
	switch {
	case err != nil:
		return Response{}, wrapErr(err, "getting the dead letter writer")
	case writer == nil:
		return Response{}, errors.New("zkafka: the ClientProvider returned a nil dead letter Writer")
	}
	if kw, ok := writer.(*KWriter); ok {
		if _, fromClient := d.cp.(*Client); fromClient {
			// A Client hands out the same writer until it is closed: keep it rather than
			// validate the config and take the Client's lock for every dead letter.
			d.cached.Store(kw)
		}
	}
	if rw, ok := writer.(rawWriter); ok {
		return rw.writeMessage(ctx, m.key(), m.value, headers)
	}
	hs := make(map[string]string, len(headers))
	for _, h := range headers {
		hs[h.Key] = string(h.Value)
	}
	var key *string
	if !m.isKeyNil {
		key = &m.Key
	}
	return writer.WriteRaw(ctx, key, m.value, WithHeaders(hs))
}

// replaceHeader sets key to value in hs, replacing an existing header of that key.
func replaceHeader(hs []kafka.Header, key string, value []byte) []kafka.Header {
	for i := range hs {
		if hs[i].Key == key {
			hs[i].Value = value
			return hs
		}
	}
	return append(hs, kafka.Header{Key: key, Value: value})
}

// close ends the writer's context and logs the dead letters the stop left unwritten. The
// writer itself belongs to the Client's cache and closes with the Client.
func (d *deadLetterWriter) close() {
	d.cancel()
	d.logDropped()
}
