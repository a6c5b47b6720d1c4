// Command first-worker prints every order written to the topic zkafka-example-orders (by
// `make example-producer`, for one) until Ctrl-C; then it finishes what it read, commits and
// exits. It is the README's "Your first worker", as a whole file.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/zkafka-go/zkafka"
)

// Order is the JSON value of a record.
type Order struct {
	ID       int     `json:"id"`
	Customer string  `json:"customer"`
	Amount   float64 `json:"amount"`
}

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	brokers := os.Getenv("KAFKA_BOOTSTRAP_SERVERS")
	if brokers == "" {
		brokers = "localhost:29092" // the Kafka of `make setup`
	}
	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{brokers}})
	defer client.Close()

	work := zkafka.NewWorkFactory(client).CreateWithFunc(zkafka.ConsumerTopicConfig{
		ClientID: "first-worker",
		GroupID:  "first-worker",
		Topic:    "zkafka-example-orders",
		AdditionalProps: map[string]any{
			"auto.offset.reset": "earliest", // a new group starts at the oldest order
		},
	}, func(ctx context.Context, msg *zkafka.Message) error {
		var order Order
		if err := msg.Decode(&order); err != nil {
			return err // bad data, the message's own fault: never retried, never trips the breaker
		}
		if order.Amount < 0 {
			return zkafka.PermanentError(fmt.Errorf("order %d has a negative amount", order.ID))
		}
		if _, err := fmt.Printf("order %d of %s: %.2f\n", order.ID, order.Customer, order.Amount); err != nil {
			return err // may pass with time: retried after a backoff, then counted by the breaker
		}
		return nil
	}, zkafka.WithRetry(zkafka.RetryPolicy{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond}))

	// Ctrl-C or SIGTERM closes shutdown: Run stops reading, finishes what it read, commits
	// and returns nil.
	shutdown := make(chan struct{})
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-signals
		close(shutdown)
	}()
	return work.Run(context.Background(), shutdown)
}
