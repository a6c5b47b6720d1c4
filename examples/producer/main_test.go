package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zkafka-go/zkafka/testhelper"
	_ "github.com/zkafka-go/zkafka/testhelper/container" // ZKAFKA_TESTCONTAINERS=1 may start Kafka in Docker
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestProducerWritesOrders(t *testing.T) {
	broker := testhelper.NewBroker(t)
	topic := testhelper.UniqueName(t, "orders")
	var out bytes.Buffer
	cfg := config{brokers: broker.Addr(), topic: topic, count: 5, duration: 30 * time.Second}
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "wrote order"); n != 5 {
		t.Fatalf("wrote %d orders, want 5:\n%s", n, out.String())
	}
	if got := testhelper.ConsumeAll(t, broker.Addr(), topic, 5, 20*time.Second); len(got) != 5 {
		t.Fatalf("read back %d records, want 5", len(got))
	}
}

func TestProducerStopsAtDeadline(t *testing.T) {
	broker := testhelper.NewBroker(t)
	cfg := config{brokers: broker.Addr(), topic: testhelper.UniqueName(t, "orders"), count: 1 << 30,
		every: 100 * time.Millisecond, duration: 2 * time.Second}
	start := time.Now()
	if err := run(context.Background(), cfg, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("run took %s with a 2 s deadline", d)
	}
}
