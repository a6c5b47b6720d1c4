// Command worker-otel traces orders from the producer to the worker with OpenTelemetry and
// prints the spans with the stdout exporter. The writer starts a "publish" span and puts its
// context in the record's headers (W3C traceparent); the Work extracts it, so its "process"
// span, and whatever the processor starts from its ctx, belong to the same trace.
//
//	go run ./examples/worker-otel                     # Kafka of `make setup`
//	ZKAFKA_EMBEDDED=1 go run ./examples/worker-otel   # an in-process broker
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zkafka-go/zkafka"
	"github.com/zkafka-go/zkafka/examples/internal/kit"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Order is the JSON payload.
type Order struct {
	ID       int    `json:"id"`
	Customer string `json:"customer"`
}

type config struct {
	brokers  string
	topic    string
	group    string
	count    int
	duration time.Duration
	pretty   bool
}

func main() {
	cfg := config{topic: "zkafka-example-traced-orders", group: "example-worker-otel", pretty: true}
	flag.IntVar(&cfg.count, "count", 2, "orders to write and process")
	duration := kit.DurationFlag(0)
	flag.Parse()
	cfg.duration = *duration

	broker, err := kit.FindBroker(false)
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	cfg.brokers = broker.Addr
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	if err := run(context.Background(), cfg, signals, os.Stdout, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run writes cfg.count orders and processes them; spans go to spans, other output to out.
func run(ctx context.Context, cfg config, signals <-chan os.Signal, out, spans io.Writer) error {
	if err := kit.CreateTopics(ctx, cfg.brokers, 1, cfg.topic); err != nil {
		return err
	}

	// The tracing setup: a provider that prints each span as it ends, and W3C trace context.
	opts := []stdouttrace.Option{stdouttrace.WithWriter(spans)}
	if cfg.pretty {
		opts = append(opts, stdouttrace.WithPrettyPrint())
	}
	exporter, err := stdouttrace.New(opts...)
	if err != nil {
		return err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	defer func() { _ = tp.Shutdown(context.Background()) }() // the syncer printed each span as it ended
	propagator := propagation.TraceContext{}

	// The client's writers start publish spans and inject their context into headers; the
	// Works of the factory extract it and start process spans.
	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{cfg.brokers}},
		zkafka.WithClientTracerProviderOption(tp),
		zkafka.WithClientTextMapPropagator(propagator))
	defer client.Close()
	factory := zkafka.NewWorkFactory(client,
		zkafka.WithTracerProvider(tp),
		zkafka.WithTextMapPropagator(propagator))
	tracer := tp.Tracer("example-worker-otel")

	// The producer side: each order is written inside a span of the code that places it.
	writer, err := client.Writer(ctx, zkafka.ProducerTopicConfig{ClientID: "example-otel-producer", Topic: cfg.topic})
	if err != nil {
		return err
	}
	for i := range cfg.count {
		ctx, span := tracer.Start(ctx, "place order")
		_, err := writer.WriteKey(ctx, fmt.Sprint("customer-", i), Order{ID: i, Customer: fmt.Sprint("customer-", i)})
		span.End()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "placed order %d in trace %s\n", i, span.SpanContext().TraceID())
	}

	// The worker side.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	shutdown, stop := kit.Shutdown(ctx, signals, cfg.duration, 20*time.Second, cancel)
	var processed atomic.Int64
	work := factory.CreateWithFunc(zkafka.ConsumerTopicConfig{
		ClientID: "example-worker-otel",
		GroupID:  cfg.group,
		Topic:    cfg.topic,
	}, func(ctx context.Context, msg *zkafka.Message) error {
		var o Order
		if err := msg.Decode(&o); err != nil {
			return err
		}
		// ctx carries the process span, a child of the producer's publish span.
		_, span := tracer.Start(ctx, "charge card")
		time.Sleep(5 * time.Millisecond)
		span.End()
		fmt.Fprintf(out, "processed order %d in trace %s\n", o.ID, trace.SpanContextFromContext(ctx).TraceID())
		if processed.Add(1) == int64(cfg.count) {
			stop()
		}
		return nil
	})
	return work.Run(ctx, shutdown)
}
