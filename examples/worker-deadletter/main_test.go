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

func TestWorkerDeadLetter(t *testing.T) {
	cfg := config{
		brokers:     testhelper.NewBroker(t).Addr(),
		topic:       testhelper.UniqueName(t, "orders"),
		deadLetters: testhelper.UniqueName(t, "orders-dead"),
		group:       testhelper.UniqueName(t, "worker"),
		seed:        20,
		duration:    45 * time.Second,
	}
	var out syncbuf.Buffer
	if err := run(context.Background(), cfg, nil, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "stopped: 20 orders processed, 4 dead-lettered, 4 dead letters inspected") {
		t.Fatalf("output:\n%s", out.String())
	}
	dead := testhelper.ConsumeAll(t, cfg.brokers, cfg.deadLetters, 4, 20*time.Second)
	for _, d := range dead {
		if string(d.Headers[zkafka.HeaderOriginalTopic]) != cfg.topic || !strings.Contains(string(d.Headers[zkafka.HeaderError]), "payment declined") {
			t.Errorf("dead letter headers: %q", d.Headers)
		}
	}
}
