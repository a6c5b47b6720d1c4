// Command worker-deadletter consumes orders and sends the ones it cannot process to a dead
// letter topic, where a second Work prints them with the headers zkafka adds (original topic,
// partition, offset, timestamp, group, error text and attempt). An order counts as finished,
// and its offset can be committed, only once the broker has acknowledged its dead letter.
//
//	go run ./examples/worker-deadletter                     # Kafka of `make setup`
//	ZKAFKA_EMBEDDED=1 go run ./examples/worker-deadletter   # in-process broker, demo orders
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
	seed        int           // orders to write first; the run ends when they are all accounted for
	duration    time.Duration // stop after this long (0: no limit)
}

func main() {
	cfg := config{topic: "zkafka-example-orders", deadLetters: "zkafka-example-orders-dead", group: "example-worker-deadletter"}
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
		cfg.seed = 20
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	if err := run(context.Background(), cfg, signals, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// errDeclined is the failure the processor reports for some orders.
var errDeclined = errors.New("payment declined")

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
	var processed, failed, inspected atomic.Int64
	seedDone := func() { // with seeded orders, stop once each is processed and each failure seen
		if cfg.seed > 0 && processed.Load() == int64(cfg.seed) && inspected.Load() == failed.Load() {
			stop()
		}
	}

	factory := zkafka.NewWorkFactory(client)
	orders := factory.CreateWithFunc(zkafka.ConsumerTopicConfig{
		ClientID: "example-worker-deadletter",
		GroupID:  cfg.group,
		Topic:    cfg.topic,
		// Failed messages go here (zkafka v2's way; the WithDeadLetterTopic option does the same).
		// ClientID, bootstrap servers and credentials left empty come from this consumer.
		DeadLetterTopicConfig: &zkafka.ProducerTopicConfig{Topic: cfg.deadLetters},
	}, func(ctx context.Context, msg *zkafka.Message) error {
		var o Order
		if err := msg.Decode(&o); err != nil {
			return err // undecodable: dead-lettered like any failure
		}
		if o.ID%5 == 4 {
			return fmt.Errorf("order %d: %w", o.ID, errDeclined)
		}
		fmt.Fprintf(out, "order %d processed\n", o.ID)
		return nil
	}, zkafka.WithOnDone(func(_ context.Context, _ *zkafka.Message, err error) {
		if err != nil {
			failed.Add(1)
		}
		processed.Add(1)
		seedDone()
	}))

	// Someone has to look at the dead letters: here a second Work prints them.
	inspector := factory.CreateWithFunc(zkafka.ConsumerTopicConfig{
		ClientID: "example-deadletter-inspector",
		GroupID:  cfg.group + "-inspector",
		Topic:    cfg.deadLetters,
	}, func(_ context.Context, msg *zkafka.Message) error {
		h := msg.Headers
		fmt.Fprintf(out, "dead letter: key %s from %s partition %s offset %s (group %s, attempt %s): %s\n",
			msg.Key, h[zkafka.HeaderOriginalTopic], h[zkafka.HeaderOriginalPartition], h[zkafka.HeaderOriginalOffset],
			h[zkafka.HeaderOriginalGroup], h[zkafka.HeaderAttempt], h[zkafka.HeaderError])
		inspected.Add(1)
		seedDone()
		return nil
	})

	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, w := range []*zkafka.Work{orders, inspector} {
		wg.Go(func() { errs[i] = w.Run(ctx, shutdown) })
	}
	wg.Wait()
	fmt.Fprintf(out, "stopped: %d orders processed, %d dead-lettered, %d dead letters inspected\n",
		processed.Load(), failed.Load(), inspected.Load())
	return errors.Join(errs...)
}
