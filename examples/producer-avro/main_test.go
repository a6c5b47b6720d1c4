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

func TestProducerAvroWritesRegistryWireFormat(t *testing.T) {
	cfg := config{
		brokers:  testhelper.NewBroker(t).Addr(),
		registry: "mock://" + testhelper.UniqueName(t, "registry"),
		topic:    testhelper.UniqueName(t, "customers"),
		count:    3,
		duration: 30 * time.Second,
	}
	var out bytes.Buffer
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "wrote "); n != 3 {
		t.Fatalf("wrote %d, want 3:\n%s", n, out.String())
	}
	for _, r := range testhelper.ConsumeAll(t, cfg.brokers, cfg.topic, 3, 20*time.Second) {
		if len(r.Value) < 5 || r.Value[0] != 0 { // magic byte 0, then the 4-byte schema id
			t.Errorf("value %x is not in the schema registry wire format", r.Value)
		}
	}
}
