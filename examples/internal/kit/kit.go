// Package kit holds what every example needs and none of them is about: finding a broker,
// creating topics, and reading the deadline that lets an example stop by itself.
//
// The broker is chosen like this:
//
//  1. KAFKA_BOOTSTRAP_SERVERS set: that broker;
//  2. ZKAFKA_EMBEDDED=1: an embedded Kafka-protocol broker in the example's own process
//     (testhelper.StartEmbedded), gone when the example exits;
//  3. otherwise localhost:29092, the Kafka that `make setup` (docker compose) starts.
package kit

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/zkafka-go/zkafka"
	"github.com/zkafka-go/zkafka/testhelper"
)

const (
	// DefaultBootstrap is the Kafka of docker-compose.yaml (`make setup`).
	DefaultBootstrap = "localhost:29092"
	// EnvBootstrap names a broker to use, e.g. "127.0.0.1:29092".
	EnvBootstrap = testhelper.EnvBootstrapServers
	// EnvEmbedded set to "1" starts an embedded broker in the example's process.
	EnvEmbedded = "ZKAFKA_EMBEDDED"
	// EnvDuration is the default of every example's -duration flag, e.g. "10s".
	EnvDuration = "EXAMPLE_DURATION"
)

// Broker is where an example connects.
type Broker struct {
	// Addr is the bootstrap servers, comma separated.
	Addr string
	// Embedded is true for an in-process broker: it starts empty and nothing else can reach
	// it, so an example that consumes writes some demo messages itself.
	Embedded bool
	stop     func()
}

// Close stops an embedded broker; it does nothing for the others.
func (b *Broker) Close() {
	if b.stop != nil {
		b.stop()
	}
}

// FindBroker returns the broker named by the environment (see the package documentation).
// forceEmbedded starts an embedded broker unless KAFKA_BOOTSTRAP_SERVERS is set (the
// quickstart's default).
func FindBroker(forceEmbedded bool) (*Broker, error) {
	if addr := strings.TrimSpace(os.Getenv(EnvBootstrap)); addr != "" {
		return &Broker{Addr: addr}, nil
	}
	if forceEmbedded || os.Getenv(EnvEmbedded) == "1" {
		e, err := testhelper.StartEmbedded()
		if err != nil {
			return nil, err
		}
		return &Broker{Addr: e.Addr(), Embedded: true, stop: e.Close}, nil
	}
	return &Broker{Addr: DefaultBootstrap}, nil
}

// DurationFlag registers -duration on the command line: how long the example runs before it
// stops by itself (0: until Ctrl-C). Its default comes from EXAMPLE_DURATION.
func DurationFlag(def time.Duration) *time.Duration {
	if s := os.Getenv(EnvDuration); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			def = d
		}
	}
	return flag.Duration("duration", def, "stop after this long (0: run until Ctrl-C); default from "+EnvDuration)
}

// CreateTopics creates topics with the given number of partitions (replication factor 1)
// unless they exist, and waits until every partition has a leader. It fails with a hint when
// no broker answers within 15 s.
func CreateTopics(ctx context.Context, addr string, partitions int, topics ...string) error {
	admin, err := NewAdmin(addr)
	if err != nil {
		return err
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	specs := make([]kafka.TopicSpecification, 0, len(topics))
	for _, t := range topics {
		specs = append(specs, kafka.TopicSpecification{Topic: t, NumPartitions: partitions, ReplicationFactor: 1})
	}
	res, err := admin.CreateTopics(ctx, specs)
	if err != nil {
		return noBroker(addr, err)
	}
	for _, r := range res {
		if c := r.Error.Code(); c != kafka.ErrNoError && c != kafka.ErrTopicAlreadyExists {
			return fmt.Errorf("creating topic %s: %w", r.Topic, r.Error)
		}
	}
	for _, t := range topics {
		if err := waitForLeaders(ctx, admin, t); err != nil {
			return noBroker(addr, err)
		}
	}
	return nil
}

func noBroker(addr string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no Kafka answered at %s (start one with `make setup`, set %s, or run with %s=1): %w",
			addr, EnvBootstrap, EnvEmbedded, err)
	}
	return err
}

func waitForLeaders(ctx context.Context, admin *kafka.AdminClient, topic string) error {
	for {
		md, err := admin.GetMetadata(&topic, false, 2000)
		if err == nil {
			if tm, ok := md.Topics[topic]; ok && tm.Error.Code() == kafka.ErrNoError && len(tm.Partitions) > 0 {
				ready := true
				for _, p := range tm.Partitions {
					ready = ready && p.Leader >= 0
				}
				if ready {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// NewAdmin returns a confluent-kafka-go admin client for addr; the caller closes it.
func NewAdmin(addr string) (*kafka.AdminClient, error) {
	return kafka.NewAdminClient(&kafka.ConfigMap{
		"bootstrap.servers":    addr,
		"client.id":            "zkafka-example-admin",
		"log.connection.close": false,
		"enable.metrics.push":  false, // no KIP-714 telemetry, and no log line about it
	})
}

// Seed writes n values to topic, value i under key, for a broker nobody else writes to (the
// embedded one starts empty).
func Seed(ctx context.Context, client *zkafka.Client, topic string, n int, gen func(i int) (key string, value any)) error {
	if n == 0 {
		return nil
	}
	w, err := client.Writer(ctx, zkafka.ProducerTopicConfig{ClientID: "example-seed", Topic: topic})
	if err != nil {
		return err
	}
	for i := range n {
		key, value := gen(i)
		if _, err := w.WriteKey(ctx, key, value); err != nil {
			return fmt.Errorf("seeding %s: %w", topic, err)
		}
	}
	return nil
}

// Shutdown returns the shutdown channel of Work.Run and a function that closes it. The
// channel is closed (a graceful stop) on the first signal, when d > 0 has passed, or when
// stop is called; if the Works are still running drain later, cancel is called (an abrupt
// stop). The goroutine behind it ends with ctx, so cancel ctx once the Works returned.
func Shutdown(ctx context.Context, signals <-chan os.Signal, d, drain time.Duration, cancel context.CancelFunc) (shutdown <-chan struct{}, stop func()) {
	ch := make(chan struct{})
	stop = sync.OnceFunc(func() { close(ch) })
	go func() {
		var deadline <-chan time.Time
		if d > 0 {
			deadline = time.After(d)
		}
		select {
		case <-signals:
		case <-deadline:
		case <-ch:
		case <-ctx.Done():
			return
		}
		stop()
		select {
		case <-time.After(drain):
			cancel()
		case <-ctx.Done():
		}
	}()
	return ch, stop
}
