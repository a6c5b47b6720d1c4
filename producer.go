package zkafka

// The producers of one KWriter (writer.go): making one from the writer's configuration (with
// its transactions initialised when the writer is transactional), draining its events into
// the Logger (errors rate-limited by failureLog), and closing the ones the writer replaced
// after a fatal error. The KWriter holds its current producer under its own lock and asks
// this for a new one. Also here: the transaction of one record and the wait for a delivery
// report, which need a producer and nothing else of the writer.
//
// Invariant: every producer made here is closed exactly once — the current one by
// KWriter.close, a replaced one by retire — and stopAll returns only once every retired
// producer is closed and every drain goroutine has been told to stop (G14).

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// producers makes, drains and retires the producers of one writer.
type producers struct {
	make     func() (KafkaProducer, error) // the provider, with the writer's configuration
	tc       ProducerTopicConfig
	failures *failureLog   // the producers' repeating errors, rate-limited
	stop     chan struct{} // closed by stopAll: drains return
	retired  sync.WaitGroup
}

// start makes a producer from the writer's configuration and, for a transactional writer,
// initialises its transactions.
func (ps *producers) start(ctx context.Context) (KafkaProducer, error) {
	p, err := ps.make()
	if err != nil {
		return nil, fmt.Errorf("zkafka: creating producer %s for topic %s: %w", ps.tc.ClientID, ps.tc.Topic, err)
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
			return nil, fmt.Errorf("zkafka: initialising transactions of producer %s: %w", ps.tc.ClientID, err)
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
// errors, and closes done; delivery reports never arrive there because every write has its
// own channel.
func (ps *producers) drain(events chan kafka.Event, done chan struct{}) {
	defer close(done)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			if e, isErr := ev.(kafka.Error); isErr {
				if brokerFailure(e) {
					ps.failures.errorf(context.Background(), "zkafka: producer cannot use the brokers; it keeps trying", e, "topic", ps.tc.Topic)
				} else {
					ps.failures.warnf(context.Background(), "zkafka: producer error", e, "topic", ps.tc.Topic)
				}
			}
		case <-ps.stop:
			return
		}
	}
}

// retire closes p, replaced after a fatal error, in the background: what it still holds
// fails with its fatal error, and closing it closes its events channel, which ends its drain.
func (ps *producers) retire(p KafkaProducer) { ps.retired.Go(p.Close) }

// stopAll waits for retired producers to close and stops every drain. The writer calls it
// once, after it closed its current producer.
func (ps *producers) stopAll() {
	ps.retired.Wait()
	close(ps.stop)
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
func transact(ctx context.Context, p KafkaProducer, topic string, msg *kafka.Message) (_ Response, queued bool, _ error) {
	tx := p.(transactor)
	if err := tx.BeginTransaction(); err != nil {
		return Response{}, false, fmt.Errorf("zkafka: beginning a transaction on topic %s: %w", topic, err)
	}
	abort := func(cause error) error {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeFlushTimeout)
		defer cancel()
		if err := tx.AbortTransaction(actx); err != nil {
			return errors.Join(cause, fmt.Errorf("zkafka: aborting the transaction on topic %s: %w", topic, err))
		}
		return cause
	}
	delivery := make(chan kafka.Event, 1)
	if err := p.Produce(msg, delivery); err != nil {
		return Response{}, false, abort(fmt.Errorf("zkafka: writing to topic %s: %w", topic, err))
	}
	resp, err := awaitDelivery(ctx, topic, delivery, nil)
	if err != nil {
		return resp, true, abort(err)
	}
	if err := tx.CommitTransaction(ctx); err != nil {
		return resp, true, abort(fmt.Errorf("zkafka: committing the transaction on topic %s: %w", topic, err))
	}
	return resp, true, nil
}

// awaitDelivery waits for the delivery report on delivery, returning ctx.Err() as soon as
// ctx is done, and an error when closed is closed first.
func awaitDelivery(ctx context.Context, topic string, delivery chan kafka.Event, closed chan struct{}) (Response, error) {
	select {
	case ev := <-delivery:
		m, ok := ev.(*kafka.Message)
		if !ok {
			return Response{}, fmt.Errorf("zkafka: writing to topic %s: unexpected delivery event %v", topic, ev)
		}
		if m.TopicPartition.Error != nil {
			return Response{}, fmt.Errorf("zkafka: writing to topic %s: %w", topic, m.TopicPartition.Error)
		}
		return Response{Partition: m.TopicPartition.Partition, Offset: int64(m.TopicPartition.Offset)}, nil
	case <-ctx.Done():
		return Response{}, ctx.Err()
	case <-closed:
		return Response{}, fmt.Errorf("zkafka: writing to topic %s: %w before the delivery report arrived", topic, errWriterClosed)
	}
}
