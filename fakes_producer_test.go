package zkafka

import (
	"context"
	"errors"
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// fakeProducer is a KafkaProducer that acknowledges every record at once, or hands it to
// onProduce when set.
type fakeProducer struct {
	conf      map[string]any
	onProduce func(msg *kafka.Message, delivery chan kafka.Event)

	mu       sync.Mutex
	produced []*kafka.Message
	closed   bool
	flushed  int
	events   chan kafka.Event
}

func (p *fakeProducer) Produce(msg *kafka.Message, delivery chan kafka.Event) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errors.New("fake producer closed")
	}
	p.produced = append(p.produced, msg)
	offset := len(p.produced) - 1
	onProduce := p.onProduce
	p.mu.Unlock()
	if onProduce != nil {
		onProduce(msg, delivery)
		return nil
	}
	ack := *msg
	ack.TopicPartition.Partition = 0
	ack.TopicPartition.Offset = kafka.Offset(offset)
	delivery <- &ack
	return nil
}

func (p *fakeProducer) Events() chan kafka.Event { return p.events }

func (p *fakeProducer) Flush(int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flushed++
	return 0
}

func (p *fakeProducer) Len() int { return 0 }

func (p *fakeProducer) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.events)
	}
}

func (p *fakeProducer) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *fakeProducer) InitTransactions(context.Context) error  { return nil }
func (p *fakeProducer) BeginTransaction() error                 { return nil }
func (p *fakeProducer) CommitTransaction(context.Context) error { return nil }
func (p *fakeProducer) AbortTransaction(context.Context) error  { return nil }

// fakeProducerFactory creates fakeProducers and remembers them.
type fakeProducerFactory struct {
	mu        sync.Mutex
	producers []*fakeProducer
	onProduce func(msg *kafka.Message, delivery chan kafka.Event)
}

func newFakeProducerFactory() *fakeProducerFactory { return &fakeProducerFactory{} }

func (f *fakeProducerFactory) provider(conf map[string]any) (KafkaProducer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := &fakeProducer{conf: conf, events: make(chan kafka.Event), onProduce: f.onProduce}
	f.producers = append(f.producers, p)
	return p, nil
}

func (f *fakeProducerFactory) all() []*fakeProducer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fakeProducer(nil), f.producers...)
}

func (f *fakeProducerFactory) last() map[string]any {
	ps := f.all()
	return ps[len(ps)-1].conf
}
