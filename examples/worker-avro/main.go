// Command worker-avro reads the customers of examples/producer-avro with version 1 of the
// Customer schema, although they were written with version 2: each record carries the id of
// its writer schema, the formatter fetches that schema from the registry and resolves the
// record to the reader schema (the email field, unknown to version 1, is skipped).
//
//	make setup && go run ./examples/worker-avro   # Kafka and the registry of docker compose
//	ZKAFKA_EMBEDDED=1 go run ./examples/worker-avro
//	    # in-process broker and registry (mock://); it writes a few v2 customers itself
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
)

// CustomerSchemaV1 is the schema this worker was built with.
const CustomerSchemaV1 = `{
  "type": "record", "name": "Customer", "namespace": "com.example",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string"}
  ]
}`

// Customer is the Go side of CustomerSchemaV1.
type Customer struct {
	ID   int64  `avro:"id"`
	Name string `avro:"name"`
}

type config struct {
	brokers  string
	registry string
	topic    string
	group    string
	seed     int // v2 customers to write first, as examples/producer-avro would
	duration time.Duration
}

func main() {
	cfg := config{topic: "zkafka-example-customers", group: "example-worker-avro", registry: os.Getenv("SCHEMA_REGISTRY_URL")}
	duration := kit.DurationFlag(0)
	flag.Parse()
	cfg.duration = *duration

	broker, err := kit.FindBroker(false)
	if err != nil {
		log.Fatal(err)
	}
	defer broker.Close()
	cfg.brokers = broker.Addr
	switch {
	case broker.Embedded:
		cfg.seed = 5 // nobody else can write to an in-process broker
		if cfg.registry == "" {
			cfg.registry = "mock://zkafka-example" // nor to an in-process registry
		}
	case cfg.registry == "":
		cfg.registry = "http://localhost:8081" // the registry of docker-compose.yaml
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	if err := run(context.Background(), cfg, signals, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, cfg config, signals <-chan os.Signal, out io.Writer) error {
	if err := kit.CreateTopics(ctx, cfg.brokers, 1, cfg.topic); err != nil {
		return err
	}
	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{cfg.brokers}})
	defer client.Close()
	if err := seed(ctx, client, cfg); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	shutdown, stop := kit.Shutdown(ctx, signals, cfg.duration, 20*time.Second, cancel)
	var processed atomic.Int64
	work := zkafka.NewWorkFactory(client).CreateWithFunc(zkafka.ConsumerTopicConfig{
		ClientID:  "example-worker-avro",
		GroupID:   cfg.group,
		Topic:     cfg.topic,
		Formatter: zkafka.AvroSchemaRegistry,
		SchemaRegistry: zkafka.SchemaRegistryConfig{
			URL:             cfg.registry,
			Deserialization: zkafka.DeserializationConfig{Schema: CustomerSchemaV1},
		},
	}, func(_ context.Context, msg *zkafka.Message) error {
		var c Customer
		if err := msg.Decode(&c); err != nil {
			return err
		}
		fmt.Fprintf(out, "read with schema v1: %+v\n", c)
		if processed.Add(1) == int64(cfg.seed) {
			stop() // the demo customers are done
		}
		return nil
	})
	err := work.Run(ctx, shutdown)
	fmt.Fprintf(out, "stopped after %d customers\n", processed.Load())
	return err
}

// seed writes cfg.seed customers with version 2 of the schema, as examples/producer-avro does.
func seed(ctx context.Context, client *zkafka.Client, cfg config) error {
	if cfg.seed == 0 {
		return nil
	}
	type customerV2 struct {
		ID    int64  `avro:"id"`
		Name  string `avro:"name"`
		Email string `avro:"email"`
	}
	const schemaV2 = `{"type": "record", "name": "Customer", "namespace": "com.example", "fields": [
		{"name": "id", "type": "long"}, {"name": "name", "type": "string"},
		{"name": "email", "type": "string", "default": ""}]}`
	w, err := client.Writer(ctx, zkafka.ProducerTopicConfig{
		ClientID:  "example-worker-avro-seed",
		Topic:     cfg.topic,
		Formatter: zkafka.AvroSchemaRegistry,
		SchemaRegistry: zkafka.SchemaRegistryConfig{URL: cfg.registry,
			Serialization: zkafka.SerializationConfig{AutoRegisterSchemas: true, Schema: schemaV2}},
	})
	if err != nil {
		return err
	}
	for i := range cfg.seed {
		c := customerV2{ID: int64(i), Name: fmt.Sprint("customer ", i), Email: fmt.Sprintf("c%d@example.com", i)}
		if _, err := w.WriteKey(ctx, fmt.Sprint(i), c); err != nil {
			return err
		}
	}
	return nil
}
