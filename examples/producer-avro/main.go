// Command producer-avro writes customers in avro through a schema registry, with version 2
// of the Customer schema (it added an email field). examples/worker-avro still reads them
// with version 1: the registry holds the writer's schema, and the reader resolves each
// record to its own older schema.
//
//	make setup && go run ./examples/producer-avro     # Kafka and the registry of docker compose
//	SCHEMA_REGISTRY_URL=http://registry:8081 go run ./examples/producer-avro
//	ZKAFKA_EMBEDDED=1 go run ./examples/producer-avro # in-process broker and registry (mock://)
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

// CustomerSchemaV2 is the newer schema: version 1 plus an email with a default.
const CustomerSchemaV2 = `{
  "type": "record", "name": "Customer", "namespace": "com.example",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string"},
    {"name": "email", "type": "string", "default": ""}
  ]
}`

// Customer is the Go side of CustomerSchemaV2.
type Customer struct {
	ID    int64  `avro:"id"`
	Name  string `avro:"name"`
	Email string `avro:"email"`
}

type config struct {
	brokers  string
	registry string
	topic    string
	count    int
	duration time.Duration
}

func main() {
	cfg := config{topic: "zkafka-example-customers", registry: os.Getenv("SCHEMA_REGISTRY_URL")}
	flag.IntVar(&cfg.count, "count", 5, "customers to write")
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
	case cfg.registry != "":
	case broker.Embedded:
		cfg.registry = "mock://zkafka-example" // an in-memory registry for an in-process broker
	default:
		cfg.registry = "http://localhost:8081" // the registry of docker-compose.yaml
	}
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
	if err := kit.CreateTopics(ctx, cfg.brokers, 1, cfg.topic); err != nil {
		return err
	}
	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{cfg.brokers}})
	defer client.Close()

	writer, err := client.Writer(ctx, zkafka.ProducerTopicConfig{
		ClientID:  "example-producer-avro",
		Topic:     cfg.topic,
		Formatter: zkafka.AvroSchemaRegistry,
		SchemaRegistry: zkafka.SchemaRegistryConfig{
			URL: cfg.registry, // "mock://name" is an in-memory registry, for tests
			Serialization: zkafka.SerializationConfig{
				AutoRegisterSchemas: true, // registers v2 under the subject "<topic>-value"
				Schema:              CustomerSchemaV2,
			},
		},
	})
	if err != nil {
		return err
	}
	for i := range cfg.count {
		c := Customer{ID: int64(i), Name: fmt.Sprint("customer ", i), Email: fmt.Sprintf("c%d@example.com", i)}
		resp, err := writer.WriteKey(ctx, fmt.Sprint(c.ID), c)
		if err != nil {
			if ctx.Err() != nil {
				return nil // deadline or Ctrl-C
			}
			return err
		}
		fmt.Fprintf(out, "wrote %+v at offset %d\n", c, resp.Offset)
	}
	return nil
}
