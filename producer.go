package zkafka

// The producers of one KWriter (writer.go): making one from the writer's configuration (with
// its transactions initialised when the writer is transactional), draining its events into
// the Logger (errors rate-limited by failureLog), and closing the ones the writer replaced
// after a fatal error. The KWriter holds its current producer under its own lock and asks
// this for a new one. Also here: the transaction of one record, the wait for a delivery
// report, and writes that do not wait for theirs (queuedRecord), which need a producer and
// nothing else of the writer.
//
// Invariant: every producer made here is closed exactly once — the current one by
// KWriter.close, a replaced one by retire — and stopAll returns only once every retired
// producer is closed and every drain goroutine has been told to stop (G14).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// producers makes, drains and retires the producers of one writer. The writer's writes, its
// drain goroutines (one per producer, two while a replaced one closes) and its Close use it at
// once; every field but retired is immutable once newWriter made it.
type producers struct {
	make     func() (KafkaProducer, error) // the provider, with the writer's configuration
	tc       ProducerTopicConfig
	failures *failureLog   // the producers' repeating errors and log lines, rate-limited
	logs     *clientLogs   // librdkafka's log lines of every producer (clientlogs.go); may be nil
	health   *brokerWatch  // reachable brokers or not (brokerhealth.go)
	brokers  *brokerReport // the producers' error events about them (brokerhealth.go)
	timeout  time.Duration // the delivery timeout (deliveryTimeout); 0: none
	stop     chan struct{} // closed by stopAll (once: inside the writer's closeOnce): drains return
	retired  sync.WaitGroup
}

// defaultDeliveryTimeout is librdkafka's delivery.timeout.ms default.
const defaultDeliveryTimeout = 300 * time.Second

// deliveryTimeout is how long librdkafka tries to deliver a record of a producer made from
// cm: delivery.timeout.ms (or its alias message.timeout.ms), else librdkafka's 300 s; 0 when
// set to 0, librdkafka's "for ever".
func deliveryTimeout(cm kafka.ConfigMap) time.Duration {
	for _, k := range []string{"delivery.timeout.ms", "message.timeout.ms"} {
		if ms, ok := intValue(cm[k]); ok && ms >= 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	return defaultDeliveryTimeout
}

// start makes a producer from the writer's configuration and, for a transactional writer,
// initialises its transactions.
func (ps *producers) start(ctx context.Context) (KafkaProducer, error) {
	p, err := ps.make()
	if err != nil {
		return nil, creationError("producer "+ps.tc.ClientID+" for topic "+ps.tc.Topic, err, ps.tc.AdditionalProps)
	}
	if p == nil {
		return nil, fmt.Errorf("zkafka: creating producer %s for topic %s: the producer provider returned no producer", ps.tc.ClientID, ps.tc.Topic)
	}
	if ps.tc.Transaction {
		tx, ok := p.(transactor)
		if !ok {
			p.Close()
			return nil, errConfig("ProducerTopicConfig.Transaction needs a producer with transactions; the one from "+
				"WithProducerProvider (%T) has no InitTransactions, BeginTransaction, CommitTransaction and AbortTransaction", p)
		}
		if err := tx.InitTransactions(ctx); err != nil {
			p.Close()
			return nil, wrapErr(err, "initialising transactions of producer %s", ps.tc.ClientID)
		}
	}
	return p, nil
}

// watch starts draining p's events, if it has any, and returns a channel closed when the
// drain has returned.
func (ps *producers) watch(p KafkaProducer) chan struct{} {
	drained := make(chan struct{})
	var events chan kafka.Event
	if es, ok := p.(eventSource); ok {
		events = es.Events()
	}
	if events != nil {
		go ps.drain(events, drained)
	} else {
		close(drained)
	}
	return drained
}

// drain reads a producer's Events channel until it is closed or Close stops it, logging
// errors, and closes done. The delivery reports that arrive there are those of records
// queued without a channel of their own (queuedRecord, below): drain hands each to
// its record.
func (ps *producers) drain(events chan kafka.Event, done chan struct{}) {
	defer close(done)
	for {
		var settle <-chan time.Time // an all-brokers-down event waits for its cause
		if ps.brokers.waiting.Load() {
			settle = time.After(brokerCauseWait) // collected unstopped (Go 1.23)
		}
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			if m, isMsg := ev.(*kafka.Message); isMsg {
				if q, queued := m.Opaque.(*queuedRecord); queued {
					q.delivered(m)
				}
				continue
			}
			if e, isErr := ev.(kafka.Error); isErr && !ps.brokers.event(e) {
				ps.failures.warnf(context.Background(), "zkafka: producer error", e, "topic", ps.tc.Topic)
			}
		case <-settle:
			ps.brokers.settle(true)
		case <-ps.stop:
			return
		}
	}
}

// producerRecovered logs a producer's way back to its brokers, after flush has written the
// outage's summary.
func producerRecovered(l Logger, tc ProducerTopicConfig, flush func()) brokerListener {
	return func(_ bool, reason string, since time.Time) {
		flush()
		l.Infow(context.Background(), "zkafka: producer reaches the brokers again", "topic", tc.Topic, "client", tc.ClientID,
			"down_since", since.Format(time.RFC3339), "was", reason)
	}
}

// The parts of *kafka.Producer beyond flusher that flushOrDrop uses when present.
type (
	// purger drops queued and in-flight records.
	purger interface{ Purge(flags int) error }
	// queueLen counts records (and reports) not yet delivered.
	queueLen interface{ Len() int }
)

var (
	_ purger   = (*kafka.Producer)(nil)
	_ queueLen = (*kafka.Producer)(nil)
)

// closeFlushStep is how long one Flush of flushOrDrop waits before it looks at the brokers.
const closeFlushStep = 100 * time.Millisecond

// flushOrDrop waits for p's queued records to be delivered, up to closeFlushTimeout, or
// closeUnreachableWait while the brokers cannot be used; then it purges what is left, so
// that the writes waiting for it fail at once, and returns how many records (as librdkafka
// counts its queue) it dropped. A producer without Flush has nothing to wait for.
func (ps *producers) flushOrDrop(p KafkaProducer) int {
	f, ok := p.(flusher)
	if !ok {
		return 0
	}
	start := time.Now()
	left := f.Flush(int(closeFlushStep.Milliseconds()))
	for left > 0 {
		waited := time.Since(start)
		if waited >= closeFlushTimeout || (waited >= closeUnreachableWait && !ps.reachable()) {
			break
		}
		left = f.Flush(int(closeFlushStep.Milliseconds()))
	}
	if left == 0 {
		return 0
	}
	if q, ok := p.(queueLen); ok {
		left = q.Len()
	}
	if pg, ok := p.(purger); ok && pg.Purge(kafka.PurgeQueue|kafka.PurgeInFlight) == nil {
		f.Flush(int(closeFlushStep.Milliseconds())) // serves the purged records' reports
	}
	return left
}

// reachable reports whether the producers' brokers can be used, as far as is known.
func (ps *producers) reachable() bool {
	ok, _, _ := ps.health.get()
	return ok
}

// retire closes p, replaced after a fatal error, in the background: what it still holds
// fails with its fatal error, and closing it closes its events channel, which ends its drain.
func (ps *producers) retire(p KafkaProducer) { ps.retired.Go(p.Close) }

// stopAll waits for retired producers to close and stops every drain. The writer calls it
// once, after it closed its current producer.
func (ps *producers) stopAll() {
	ps.retired.Wait()
	close(ps.stop)
	ps.logs.close()
	ps.failures.close()
}

// fatalError returns the fatal error of a producer that has one (a confluent-kafka-go
// producer does; a producer from WithProducerProvider may implement GetFatalError too).
func fatalError(p KafkaProducer) error {
	if f, ok := p.(interface{ GetFatalError() error }); ok {
		return f.GetFatalError()
	}
	return nil
}

// defaultProducerProvider creates a confluent-kafka-go producer.
func defaultProducerProvider(conf map[string]any) (KafkaProducer, error) {
	cm := toConfigMap(conf)
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// toConfigMap converts a provider function's map back to a ConfigMap.
func toConfigMap(conf map[string]any) kafka.ConfigMap {
	cm := make(kafka.ConfigMap, len(conf))
	for k, v := range conf {
		cm[k] = v
	}
	return cm
}

// configMapToAny converts a ConfigMap for the provider functions.
func configMapToAny(cm kafka.ConfigMap) map[string]any {
	out := make(map[string]any, len(cm))
	for k, v := range cm {
		out[k] = v
	}
	return out
}

// transact runs one transaction of msg on p, which has transactions (producers.start refused
// one without them); the caller holds the writer's lock shared.
func (ps *producers) transact(ctx context.Context, p KafkaProducer, msg *kafka.Message) (_ Response, queued bool, _ error) {
	topic := ps.tc.Topic
	tx := p.(transactor)
	if err := tx.BeginTransaction(); err != nil {
		return Response{}, false, wrapErr(err, "beginning a transaction on topic %s", topic)
	}
	abort := func(cause error) error {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeFlushTimeout)
		defer cancel()
		if err := tx.AbortTransaction(actx); err != nil {
			// One "zkafka: " for the joined text: the abort's error is the cause's second line.
			return errors.Join(cause, fmt.Errorf("aborting the transaction on topic %s also failed: %w", topic, err))
		}
		return cause
	}
	delivery := make(chan kafka.Event, 1)
	if err := p.Produce(msg, delivery); err != nil {
		return Response{}, false, abort(wrapErr(err, "writing to topic %s", topic))
	}
	resp, err := ps.await(ctx, delivery, nil)
	if err != nil {
		return resp, true, abort(err)
	}
	if err := tx.CommitTransaction(ctx); err != nil {
		return resp, true, abort(wrapErr(err, "committing the transaction on topic %s", topic))
	}
	return resp, true, nil
}

// await waits for the delivery report on delivery and returns as soon as ctx is done, the
// delivery timeout has passed, or closed is closed, each with its own error. librdkafka
// reports a record it gave up on after the delivery timeout, but only at its next scan (up to
// a second later), and a context may have no deadline: the timer makes a write return within
// the delivery timeout whatever its context. A delivered record is a sign of life of the
// brokers; a timeout says why the brokers could not be used, when that is known.
func (ps *producers) await(ctx context.Context, delivery chan kafka.Event, closed chan struct{}) (Response, error) {
	var expired <-chan time.Time
	if ps.timeout > 0 {
		if d, ok := ctx.Deadline(); !ok || time.Until(d) > ps.timeout {
			t := time.NewTimer(ps.timeout)
			defer t.Stop()
			expired = t.C
		}
	}
	topic := ps.tc.Topic
	select {
	case ev := <-delivery:
		return ps.report(ev)
	case <-expired:
		return Response{}, ps.timedOut(kafka.NewError(kafka.ErrMsgTimedOut, "no delivery report within the delivery timeout", false),
			"; the record may still be written later")
	case <-ctx.Done():
		return Response{}, wrapErr(ctx.Err(), "writing to topic %s", topic)
	case <-closed:
		return Response{}, fmt.Errorf("zkafka: writing to topic %s: %w before the delivery report arrived", topic, errWriterClosed)
	}
}

// report reads a delivery report: the record's partition and offset, or why it was not
// written. A delivered record is a sign of life of the brokers.
func (ps *producers) report(ev kafka.Event) (Response, error) {
	m, ok := ev.(*kafka.Message)
	if !ok {
		return Response{}, fmt.Errorf("zkafka: writing to topic %s: unexpected delivery event %v", ps.tc.Topic, ev)
	}
	if err := m.TopicPartition.Error; err != nil {
		var kerr kafka.Error
		if errors.As(err, &kerr) && kerr.Code() == kafka.ErrMsgTimedOut {
			return Response{}, ps.timedOut(err, "")
		}
		return Response{}, wrapErr(err, "writing to topic %s", ps.tc.Topic)
	}
	ps.brokers.alive()
	return Response{Partition: m.TopicPartition.Partition, Offset: int64(m.TopicPartition.Offset)}, nil
}

// timedOut is the error of a write not delivered within the delivery timeout: err, the
// timeout, note and, when the brokers are known to be unusable, why.
func (ps *producers) timedOut(err error, note string) error {
	if reachable, reason, since := ps.health.get(); !reachable {
		note += fmt.Sprintf("; the brokers cannot be used since %s: %s", since.Format(time.RFC3339), reason)
	}
	return fmt.Errorf("zkafka: writing to topic %s: not delivered within the delivery timeout of %s "+
		"(ProducerTopicConfig.DeliveryTimeoutMs)%s: %w", ps.tc.Topic, ps.timeout, note, err)
}

// Writes that do not wait (for the dead letter path, deadletter_queue.go): the record goes
// to the producer with its queuedRecord as the Opaque and no delivery channel of its own, so
// its delivery report arrives on the producer's Events channel, which the writer's drain
// goroutine (drain, above) reads anyway, and which hands the report to the record. No goroutine
// of the caller waits for the acknowledgement: a dead letter written by a goroutine that
// waited cost several times the CPU (make bench, deadletter-s8; docs/performance.md), most of
// it in that goroutine's wake-ups, timers and stack.

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
	w.mu.RLock()
	_, ok := w.producer.(*kafka.Producer) // under mu: a write may replace the producer (replaceIfFatal)
	w.mu.RUnlock()
	if !ok {
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
