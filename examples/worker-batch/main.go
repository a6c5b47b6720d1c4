// Command worker-batch consumes orders in batches and writes each batch to a sink with one
// bulk call, as a worker feeding a database or a search index does: a batch processor
// (WorkFactory.CreateBatch) gets up to 100 orders of one virtual partition at a time, in
// read order. The sink refuses some rows: the processor names them in a BatchError, the
// other orders of the batch are finished at once, and the refused ones go to the dead letter
// topic. The sink is also down at first: that bulk call fails as a whole and every order of
// the batch takes the retry path (WithRetry), keeping each customer's orders in order.
//
//	go run ./examples/worker-batch                     # Kafka of `make setup`
//	ZKAFKA_EMBEDDED=1 go run ./examples/worker-batch   # in-process broker, demo orders
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zkafka-go/zkafka"
	"github.com/zkafka-go/zkafka/examples/internal/kit"
)

// Order is the JSON payload of examples/producer.
type Order struct {
	ID       int     `json:"id"`
	Customer string  `json:"customer"`
	Amount   float64 `json:"amount"`
}

type config struct {
	brokers     string
	topic       string
	deadLetters string
	group       string
	seed        int           // orders to write first; the run ends when they are all finished
	duration    time.Duration // stop after this long (0: no limit)
}

func main() {
	cfg := config{topic: "zkafka-example-orders", deadLetters: "zkafka-example-orders-dead", group: "example-worker-batch"}
	duration := kit.DurationFlag(0)
	flag.Parse()
	cfg.duration = *duration

	broker, err := kit.FindBroker(false)
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	cfg.brokers = broker.Addr
	if broker.Embedded {
		cfg.seed = 50
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	if err := run(context.Background(), cfg, signals, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// warehouse is the sink: a table of orders by id, written with one bulk upsert per batch (so
// writing an order again is harmless). It refuses orders whose amount ends in 60, and its
// first call fails as a whole (the service is starting).
type warehouse struct {
	mu     sync.Mutex
	rows   map[int]Order
	calls  int
	failed bool
}

var errUnavailable = errors.New("warehouse unavailable")

// upsert writes rows in one call. It fails as a whole (a transient error) or returns the
// index of each row it refused, with the reason.
func (w *warehouse) upsert(rows []Order) (map[int]error, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if !w.failed {
		w.failed = true
		return nil, errUnavailable
	}
	refused := map[int]error{}
	for i, o := range rows {
		if int(o.Amount)%100 == 60 {
			refused[i] = fmt.Errorf("order %d: amount %.2f fails a check constraint", o.ID, o.Amount)
			continue
		}
		w.rows[o.ID] = o
	}
	return refused, nil
}

func run(ctx context.Context, cfg config, signals <-chan os.Signal, out io.Writer) error {
	if err := kit.CreateTopics(ctx, cfg.brokers, 4, cfg.topic, cfg.deadLetters); err != nil {
		return err
	}
	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{cfg.brokers}})
	defer client.Close()
	err := kit.Seed(ctx, client, cfg.topic, cfg.seed, func(i int) (string, any) {
		return fmt.Sprint("customer-", i%3), Order{ID: i, Customer: fmt.Sprint("customer-", i%3), Amount: float64(10 * i)}
	})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	shutdown, stop := kit.Shutdown(ctx, signals, cfg.duration, 20*time.Second, cancel)
	var finished, deadLettered atomic.Int64
	sink := &warehouse{rows: map[int]Order{}}

	w := zkafka.NewWorkFactory(client).CreateBatchWithFunc(zkafka.ConsumerTopicConfig{
		ClientID: "example-worker-batch",
		GroupID:  cfg.group,
		Topic:    cfg.topic,
	}, func(ctx context.Context, msgs []*zkafka.Message) error {
		var failed zkafka.BatchError
		rows := make([]Order, 0, len(msgs))
		at := make([]int, 0, len(msgs)) // the index in msgs of each row
		for i, m := range msgs {
			var o Order
			if err := m.Decode(&o); err != nil {
				failed.Fail(i, err) // undecodable: permanent, dead-lettered
				continue
			}
			rows = append(rows, o)
			at = append(at, i)
		}
		refused, err := sink.upsert(rows)
		if err != nil {
			fmt.Fprintf(out, "batch of %d: %v; retrying\n", len(msgs), err)
			return err // the whole batch fails: transient, retried
		}
		for i, why := range refused {
			failed.Fail(at[i], zkafka.PermanentError(why)) // no retry fixes it: dead letter
		}
		fmt.Fprintf(out, "batch of %d written (%d refused)\n", len(msgs), len(refused))
		if len(failed.Failed) > 0 {
			return &failed // the others are finished now
		}
		return nil
	},
		zkafka.Speedup(2),
		zkafka.WithBatch(zkafka.BatchPolicy{MaxMessages: 100, MaxWait: 20 * time.Millisecond}),
		zkafka.WithRetry(zkafka.RetryPolicy{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond}),
		zkafka.WithDeadLetterTopic(zkafka.ProducerTopicConfig{Topic: cfg.deadLetters}),
		zkafka.WithOnDone(func(_ context.Context, _ *zkafka.Message, err error) {
			if err != nil {
				deadLettered.Add(1)
			}
			if finished.Add(1) == int64(cfg.seed) {
				stop() // with seeded orders, stop once each is finished
			}
		}))
	err = w.Run(ctx, shutdown)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	fmt.Fprintf(out, "stopped: %d orders finished, %d in the warehouse, %d dead-lettered, %d bulk calls\n",
		finished.Load(), len(sink.rows), deadLettered.Load(), sink.calls)
	return err
}
