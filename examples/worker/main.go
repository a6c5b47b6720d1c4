// Command worker consumes the orders of examples/producer with a zkafka Work: five virtual
// partitions process different customers in parallel and each customer's orders in order.
// It stops gracefully on SIGINT or SIGTERM (as Kubernetes sends before killing a pod): it
// stops reading, finishes and commits what it has, and cancels whatever is still running
// after a drain period shorter than the pod's terminationGracePeriodSeconds.
//
//	go run ./examples/worker                      # Kafka of `make setup` on localhost:29092
//	ZKAFKA_EMBEDDED=1 go run ./examples/worker    # an in-process broker with demo orders
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
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
	group       string
	seed        int           // orders to write first (the embedded broker starts empty)
	maxMessages int64         // stop after this many (0: no limit)
	duration    time.Duration // stop after this long (0: no limit)
	drain       time.Duration // how long a graceful stop may take before ctx is cancelled
	statusAddr  string        // where the status page is served ("": nowhere)
}

func main() {
	cfg := config{topic: "zkafka-example-orders", group: "example-worker"}
	flag.Int64Var(&cfg.maxMessages, "max-messages", 0, "stop after processing this many orders (0: no limit)")
	flag.DurationVar(&cfg.drain, "drain", 20*time.Second, "time allowed to finish in-flight work after SIGTERM")
	flag.StringVar(&cfg.statusAddr, "status-addr", "127.0.0.1:8081", "where to serve the status page (empty: nowhere)")
	duration := kit.DurationFlag(0)
	flag.Parse()
	cfg.duration = *duration

	broker, err := kit.FindBroker(false)
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	cfg.brokers = broker.Addr
	if broker.Embedded { // it starts empty: write some orders, stop when they are done
		cfg.seed = 20
		if cfg.maxMessages == 0 {
			cfg.maxMessages = 20
		}
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	if err := run(context.Background(), cfg, signals, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, cfg config, signals <-chan os.Signal, out io.Writer) error {
	if err := kit.CreateTopics(ctx, cfg.brokers, 4, cfg.topic); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{cfg.brokers}},
		zkafka.LoggerOption(zkafka.NewSlogLogger(logger)))
	defer client.Close()
	customers := []string{"alice", "bob", "carol", "dave", "erin"}
	err := kit.Seed(ctx, client, cfg.topic, cfg.seed, func(i int) (string, any) {
		o := Order{ID: i, Customer: customers[i%len(customers)], Amount: float64(10 + i)}
		return o.Customer, o
	})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	shutdown := make(chan struct{})
	stop := sync.OnceFunc(func() { close(shutdown) })
	var processed atomic.Int64

	work := zkafka.NewWorkFactory(client).CreateWithFunc(zkafka.ConsumerTopicConfig{
		ClientID: "example-worker",
		GroupID:  cfg.group,
		Topic:    cfg.topic,
	}, func(ctx context.Context, msg *zkafka.Message) error {
		var order Order
		if err := msg.Decode(&order); err != nil {
			return err // bad data (permanent): logged and skipped, never retried, never trips the breaker
		}
		if order.Amount < 0 {
			return zkafka.PermanentError(fmt.Errorf("order %d has a negative amount", order.ID))
		}
		_, err := fmt.Fprintf(out, "order %d of %s: %.2f (partition %d, offset %d)\n",
			order.ID, order.Customer, order.Amount, msg.Partition, msg.Offset)
		if err != nil {
			return err // may pass with time (transient): retried after a backoff, then counted by the breaker
		}
		if n := processed.Add(1); n == cfg.maxMessages {
			stop() // graceful stop from inside: Run returns once this one is done
		}
		return nil
	}, zkafka.Speedup(5), zkafka.WithRetry(zkafka.RetryPolicy{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond}))

	// The status page: one row per partition, stuck ones first, with the message that holds
	// each one's offset. Serve it only where operators reach it (it shows message keys).
	stopPage, err := kit.ServeStatusPage(cfg.statusAddr, zkafka.StatusHandler(work), out)
	if err != nil {
		return err
	}
	defer stopPage()

	// Graceful stop on a signal or the deadline, then, if draining takes too long, abrupt.
	go func() {
		var deadline <-chan time.Time
		if cfg.duration > 0 {
			deadline = time.After(cfg.duration)
		}
		select {
		case <-signals:
		case <-deadline:
		case <-shutdown:
		case <-ctx.Done():
			return
		}
		stop() // graceful: stop reading, finish what was read, commit
		select {
		case <-time.After(cfg.drain):
			cancel() // unfinished work is not committed and will be read again
		case <-ctx.Done():
		}
	}()

	err = work.Run(ctx, shutdown)
	fmt.Fprintf(out, "stopped after processing %d orders\n", processed.Load())
	return err
}
