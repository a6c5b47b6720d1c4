// Command producer writes JSON orders to a topic with a zkafka Writer, keyed by customer so
// that a worker sees each customer's orders in order.
//
//	go run ./examples/producer                      # Kafka of `make setup` on localhost:29092
//	go run ./examples/producer -count 100 -every 50ms
//	ZKAFKA_EMBEDDED=1 go run ./examples/producer    # an in-process broker, nothing to install
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/zkafka-go/zkafka"
	"github.com/zkafka-go/zkafka/examples/internal/kit"
)

// Order is the JSON payload the producer writes and the worker examples read.
type Order struct {
	ID       int     `json:"id"`
	Customer string  `json:"customer"`
	Amount   float64 `json:"amount"`
}

type config struct {
	brokers  string
	topic    string
	count    int
	every    time.Duration
	duration time.Duration
}

func main() {
	cfg := config{topic: "zkafka-example-orders"}
	flag.IntVar(&cfg.count, "count", 10, "orders to write")
	flag.DurationVar(&cfg.every, "every", 0, "pause between orders")
	duration := kit.DurationFlag(0)
	flag.Parse()
	cfg.duration = *duration

	broker, err := kit.FindBroker(false)
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	cfg.brokers = broker.Addr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	if err := kit.CreateTopics(ctx, cfg.brokers, 4, cfg.topic); err != nil {
		return err
	}

	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{cfg.brokers}})
	defer client.Close() // flushes and closes the writer

	writer, err := client.Writer(ctx, zkafka.ProducerTopicConfig{
		ClientID: "example-producer",
		Topic:    cfg.topic,
		// Formatter defaults to JSON.
	})
	if err != nil {
		return err
	}

	customers := []string{"alice", "bob", "carol"}
	for i := range cfg.count {
		order := Order{ID: i, Customer: customers[i%len(customers)], Amount: float64(10 + i)}
		// WriteKey waits for the broker's acknowledgement; equal keys go to one partition.
		resp, err := writer.WriteKey(ctx, order.Customer, order,
			zkafka.WithHeaders(map[string]string{"source": "example-producer"}))
		if err != nil {
			if ctx.Err() != nil {
				return nil // deadline or Ctrl-C: stop quietly
			}
			return err
		}
		fmt.Fprintf(out, "wrote order %d for %s to partition %d at offset %d\n", order.ID, order.Customer, resp.Partition, resp.Offset)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(cfg.every):
		}
	}
	return nil
}
