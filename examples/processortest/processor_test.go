package processortest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zkafka-go/zkafka"
	"github.com/zkafka-go/zkafka/testhelper"
	_ "github.com/zkafka-go/zkafka/testhelper/container" // ZKAFKA_TESTCONTAINERS=1 may start Kafka in Docker
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A unit test: no broker, a Message built from a FakeMessage.
func TestProcessorRejectsInvalidOrders(t *testing.T) {
	var total float64
	p := Processor{Total: func(a float64) { total += a }}
	ok := zkafka.GetMsgFromFake(&zkafka.FakeMessage{ValueData: Order{ID: 1, Amount: 10}})
	bad := zkafka.GetMsgFromFake(&zkafka.FakeMessage{ValueData: Order{ID: 2, Amount: -1}})

	if err := p.Process(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	if err := p.Process(context.Background(), bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
	if total != 10 {
		t.Fatalf("total %v, want 10", total)
	}
}

// An end-to-end test: the processor in a Work, on a broker, with a dead letter topic.
func TestProcessorInAWork(t *testing.T) {
	broker := testhelper.NewBroker(t) // embedded unless KAFKA_BOOTSTRAP_SERVERS is set
	topic := testhelper.UniqueName(t, "orders")
	dead := testhelper.UniqueName(t, "orders-dead")
	group := testhelper.UniqueName(t, "group")
	testhelper.CreateTopic(t, broker.Addr(), topic, 2)
	testhelper.CreateTopic(t, broker.Addr(), dead, 1)
	testhelper.Produce(t, broker.Addr(), topic,
		testhelper.Record{Key: []byte("a"), Value: []byte(`{"id":1,"amount":10}`), Partition: testhelper.AnyPartition},
		testhelper.Record{Key: []byte("b"), Value: []byte(`{"id":2,"amount":-1}`), Partition: testhelper.AnyPartition},
		testhelper.Record{Key: []byte("a"), Value: []byte(`{"id":3,"amount":5}`), Partition: testhelper.AnyPartition},
	)

	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{broker.Addr()}})
	defer client.Close()
	var done atomic.Int64
	shutdown := make(chan struct{})
	var total atomic.Int64
	work := zkafka.NewWorkFactory(client).Create(zkafka.ConsumerTopicConfig{
		ClientID: t.Name(), GroupID: group, Topic: topic,
	}, Processor{Total: func(a float64) { total.Add(int64(a)) }},
		zkafka.WithDeadLetterTopic(zkafka.ProducerTopicConfig{Topic: dead}),
		zkafka.WithOnDone(func(context.Context, *zkafka.Message, error) {
			if done.Add(1) == 3 {
				close(shutdown) // graceful stop: finish, commit, return
			}
		}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := work.Run(ctx, shutdown); err != nil {
		t.Fatal(err)
	}

	if total.Load() != 15 {
		t.Errorf("total %d, want 15", total.Load())
	}
	letters := testhelper.ConsumeAll(t, broker.Addr(), dead, 1, 10*time.Second)
	if got := string(letters[0].Headers[zkafka.HeaderOriginalTopic]); got != topic {
		t.Errorf("dead letter from %q, want %q", got, topic)
	}
	committed := testhelper.CommittedOffsets(t, broker.Addr(), group, topic)
	end := testhelper.EndOffsets(t, broker.Addr(), topic)
	for p, off := range end {
		if committed[p] != off {
			t.Errorf("partition %d: committed %d, end %d", p, committed[p], off)
		}
	}
}
