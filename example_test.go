package zkafka_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/zkafka-go/zkafka"
)

// A Client is made once per cluster and shared; it connects on the first Reader or Writer.
// Printing a config never shows a password.
func ExampleNewClient() {
	user, password := "svc-orders", "s3cret"
	conf := zkafka.Config{
		BootstrapServers: []string{"localhost:29092"},
		SaslUsername:     &user,
		SaslPassword:     &password,
	}
	client := zkafka.NewClient(conf, zkafka.KafkaGroupPrefixOption("staging."))
	defer client.Close()

	fmt.Println(conf)
	// Output: {BootstrapServers:[localhost:29092] SaslUsername:svc-orders SaslPassword:*** CAFile: KeyFile: CertFile:}
}

// OrderProcessor is a processor: a type with a Process method.
type OrderProcessor struct{}

// Order is the JSON payload of the orders topic.
type Order struct {
	ID     int     `json:"id"`
	Amount float64 `json:"amount"`
}

// Process handles one message. Returning an error marks it failed (dead-lettered when a dead
// letter topic is set); returning nil marks it done.
func (OrderProcessor) Process(ctx context.Context, msg *zkafka.Message) error {
	var o Order
	if err := msg.Decode(&o); err != nil {
		return err
	}
	if o.Amount <= 0 {
		return fmt.Errorf("order %d: amount %.2f is not positive", o.ID, o.Amount)
	}
	return nil
}

// A Work runs a processor for every message of a topic. Closing the shutdown channel stops it
// gracefully: it finishes and commits what it read, then Run returns.
func ExampleWorkFactory_Create() {
	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{"localhost:29092"}})
	defer client.Close()

	factory := zkafka.NewWorkFactory(client)
	work := factory.Create(zkafka.ConsumerTopicConfig{
		ClientID: "orders-worker",
		GroupID:  "orders-worker",
		Topic:    "orders",
	}, OrderProcessor{}, zkafka.Speedup(5))

	shutdown := make(chan struct{})
	go func() {
		signals := make(chan os.Signal, 1)
		signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
		<-signals
		close(shutdown)
	}()
	if err := work.Run(context.Background(), shutdown); err != nil {
		log.Fatal(err)
	}
}

// A Writer writes to one topic; each write waits for the broker's acknowledgement.
func ExampleClient_Writer() {
	ctx := context.Background()
	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{"localhost:29092"}})
	defer client.Close() // flushes and closes the writers

	writer, err := client.Writer(ctx, zkafka.ProducerTopicConfig{
		ClientID: "orders-api",
		Topic:    "orders",
	})
	if err != nil {
		log.Fatal(err)
	}
	resp, err := writer.WriteKey(ctx, "customer-42", Order{ID: 1, Amount: 9.99},
		zkafka.WithHeaders(map[string]string{"source": "orders-api"}))
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("written to partition %d at offset %d", resp.Partition, resp.Offset)
}

// Failed messages go to a dead letter topic with their key, value and headers plus
// zkafka-original-topic, -partition, -offset, -timestamp, -group, zkafka-error and
// zkafka-attempt. A message is done only once its dead letter is acknowledged.
func ExampleWithDeadLetterTopic() {
	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{"localhost:29092"}})
	defer client.Close()

	errNotFound := errors.New("customer not found")
	work := zkafka.NewWorkFactory(client).CreateWithFunc(zkafka.ConsumerTopicConfig{
		ClientID: "orders-worker",
		GroupID:  "orders-worker",
		Topic:    "orders",
	}, func(ctx context.Context, msg *zkafka.Message) error {
		var o Order
		if err := msg.Decode(&o); err != nil {
			return err // dead-lettered, counts towards the circuit breaker
		}
		if o.ID == 0 {
			// A bad message, not a broken dependency: do not open the circuit breaker.
			return zkafka.ProcessError{Err: errNotFound, DisableCircuitBreak: true}
		}
		return nil
	},
		// ClientID, bootstrap servers and SASL settings left empty come from the consumer.
		zkafka.WithDeadLetterTopic(zkafka.ProducerTopicConfig{Topic: "orders-dead"}),
	)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := work.Run(ctx, nil); err != nil {
		log.Fatal(err)
	}
}

// Processors are plain Go: test them with a Message built by GetMsgFromFake, no broker needed.
func ExampleGetMsgFromFake() {
	key := "customer-42"
	msg := zkafka.GetMsgFromFake(&zkafka.FakeMessage{
		Key:       &key,
		ValueData: Order{ID: 7, Amount: 12.5}, // encoded with the default JSON formatter
		Topic:     "orders",
		Offset:    3,
	})

	var o Order
	if err := msg.Decode(&o); err != nil {
		fmt.Println(err)
	}
	fmt.Println(msg.Key, msg.Topic, msg.Offset, o.ID, o.Amount)
	fmt.Println(OrderProcessor{}.Process(context.Background(), msg))

	refund := zkafka.GetMsgFromFake(&zkafka.FakeMessage{ValueData: Order{ID: 8, Amount: -5}})
	fmt.Println(OrderProcessor{}.Process(context.Background(), refund))
	// Output:
	// customer-42 orders 3 7 12.5
	// <nil>
	// order 8: amount -5.00 is not positive
}
