package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zkafka-go/zkafka"
	"github.com/zkafka-go/zkafka/examples/internal/syncbuf"
	"github.com/zkafka-go/zkafka/testhelper"
	_ "github.com/zkafka-go/zkafka/testhelper/container" // ZKAFKA_TESTCONTAINERS=1 may start Kafka in Docker
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestWorkerBatch: 50 orders; the first bulk call fails and its batch is retried; the five
// orders whose amount ends in 60 (6, 16, 26, 36, 46) are refused and dead-lettered; the other
// 45 are in the warehouse.
func TestWorkerBatch(t *testing.T) {
	cfg := config{
		brokers:     testhelper.NewBroker(t).Addr(),
		topic:       testhelper.UniqueName(t, "orders"),
		deadLetters: testhelper.UniqueName(t, "orders-dead"),
		group:       testhelper.UniqueName(t, "worker"),
		seed:        50,
		duration:    45 * time.Second,
	}
	var out syncbuf.Buffer
	if err := run(context.Background(), cfg, nil, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "warehouse unavailable; retrying") ||
		!strings.Contains(out.String(), "stopped: 50 orders finished, 45 in the warehouse, 5 dead-lettered") {
		t.Fatalf("output:\n%s", out.String())
	}
	dead := testhelper.ConsumeAll(t, cfg.brokers, cfg.deadLetters, 5, 20*time.Second)
	for _, d := range dead {
		if string(d.Headers[zkafka.HeaderOriginalTopic]) != cfg.topic || !strings.Contains(string(d.Headers[zkafka.HeaderError]), "fails a check constraint") {
			t.Errorf("dead letter headers: %q", d.Headers)
		}
	}
}
