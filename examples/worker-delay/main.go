// Command worker-delay builds a retry chain out of dead letter topics and ProcessDelayMillis:
//
//	orders ──fails──▶ orders-retry ──(delayed worker) fails again──▶ orders-dead
//
// The first Work sends failed orders to orders-retry. A second Work reads orders-retry with
// ProcessDelayMillis, so each order is retried no earlier than its dead letter's timestamp
// plus the delay (old ones are not delayed again; the reader keeps polling while it waits, so
// a long delay causes no rebalance). What fails again goes to orders-dead, with zkafka-attempt
// 2; a third Work prints those.
//
//	go run ./examples/worker-delay                      # Kafka of `make setup`
//	ZKAFKA_EMBEDDED=1 go run ./examples/worker-delay    # in-process broker, demo orders
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
	brokers  string
	prefix   string // topic and group names start with it
	seed     int    // orders to write first; the run ends when they are all accounted for
	delay    time.Duration
	duration time.Duration
}

func main() {
	cfg := config{prefix: "zkafka-example-orders"}
	flag.DurationVar(&cfg.delay, "delay", 3*time.Second, "how long after its first failure an order is retried")
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
		cfg.seed = 12
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	if err := run(context.Background(), cfg, signals, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// errUnavailable is the failure the processors report for some orders.
var errUnavailable = errors.New("payment service unavailable")

func run(ctx context.Context, cfg config, signals <-chan os.Signal, out io.Writer) error {
	topic, retry, dead := cfg.prefix, cfg.prefix+"-retry", cfg.prefix+"-dead"
	if err := kit.CreateTopics(ctx, cfg.brokers, 4, topic, retry, dead); err != nil {
		return err
	}
	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{cfg.brokers}})
	defer client.Close()
	err := kit.Seed(ctx, client, topic, cfg.seed, func(i int) (string, any) {
		return fmt.Sprint("customer-", i%3), Order{ID: i, Customer: fmt.Sprint("customer-", i%3), Amount: float64(10 * i)}
	})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	shutdown, stop := kit.Shutdown(ctx, signals, cfg.duration, 20*time.Second, cancel)
	var processed, retried, failedFirst, failedAgain, final atomic.Int64
	seedDone := func() { // with seeded orders, stop once every order has reached its end
		if cfg.seed > 0 && processed.Load() == int64(cfg.seed) && retried.Load() == failedFirst.Load() && final.Load() == failedAgain.Load() {
			stop()
		}
	}
	delayMillis := int(cfg.delay.Milliseconds())
	factory := zkafka.NewWorkFactory(client)

	// Stage 1: every third order fails the first time.
	first := factory.CreateWithFunc(zkafka.ConsumerTopicConfig{
		ClientID: "example-delay-first", GroupID: cfg.prefix + "-first", Topic: topic,
	}, func(_ context.Context, msg *zkafka.Message) error {
		var o Order
		if err := msg.Decode(&o); err != nil {
			return err
		}
		if o.ID%3 == 1 {
			fmt.Fprintf(out, "order %d failed, retrying in %s\n", o.ID, cfg.delay)
			return fmt.Errorf("order %d: %w", o.ID, errUnavailable)
		}
		fmt.Fprintf(out, "order %d processed\n", o.ID)
		return nil
	},
		zkafka.WithDeadLetterTopic(zkafka.ProducerTopicConfig{Topic: retry}),
		zkafka.WithOnDone(func(_ context.Context, _ *zkafka.Message, err error) {
			if err != nil {
				failedFirst.Add(1)
			}
			processed.Add(1)
			seedDone()
		}))

	// Stage 2: the delayed retry; every second retried order fails again, for good.
	second := factory.CreateWithFunc(zkafka.ConsumerTopicConfig{
		ClientID: "example-delay-retry", GroupID: cfg.prefix + "-retry", Topic: retry,
		ProcessDelayMillis: &delayMillis,
	}, func(_ context.Context, msg *zkafka.Message) error {
		var o Order
		if err := msg.Decode(&o); err != nil {
			return err
		}
		waited := time.Since(msg.TimeStamp).Round(100 * time.Millisecond)
		if o.ID%2 == 0 {
			fmt.Fprintf(out, "order %d retried %s after its failure (attempt %s): failed again\n", o.ID, waited, msg.Headers[zkafka.HeaderAttempt])
			return fmt.Errorf("order %d: %w", o.ID, errUnavailable)
		}
		fmt.Fprintf(out, "order %d retried %s after its failure (attempt %s): processed\n", o.ID, waited, msg.Headers[zkafka.HeaderAttempt])
		return nil
	},
		zkafka.WithDeadLetterTopic(zkafka.ProducerTopicConfig{Topic: dead}),
		zkafka.WithOnDone(func(_ context.Context, _ *zkafka.Message, err error) {
			if err != nil {
				failedAgain.Add(1)
			}
			retried.Add(1)
			seedDone()
		}))

	// Stage 3: the end of the chain, for a person (or an alert) to look at.
	last := factory.CreateWithFunc(zkafka.ConsumerTopicConfig{
		ClientID: "example-delay-dead", GroupID: cfg.prefix + "-dead", Topic: dead,
	}, func(_ context.Context, msg *zkafka.Message) error {
		fmt.Fprintf(out, "gave up on key %s after attempt %s: %s\n", msg.Key, msg.Headers[zkafka.HeaderAttempt], msg.Headers[zkafka.HeaderError])
		final.Add(1)
		seedDone()
		return nil
	})

	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i, w := range []*zkafka.Work{first, second, last} {
		wg.Go(func() { errs[i] = w.Run(ctx, shutdown) })
	}
	wg.Wait()
	fmt.Fprintf(out, "stopped: %d orders processed, %d retried, %d dead for good\n", processed.Load(), retried.Load(), final.Load())
	return errors.Join(errs...)
}
