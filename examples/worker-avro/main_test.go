package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zkafka-go/zkafka/examples/internal/syncbuf"
	"github.com/zkafka-go/zkafka/testhelper"
	_ "github.com/zkafka-go/zkafka/testhelper/container" // ZKAFKA_TESTCONTAINERS=1 may start Kafka in Docker
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWorkerAvroReadsNewerSchema(t *testing.T) {
	cfg := config{
		brokers:  testhelper.NewBroker(t).Addr(),
		registry: "mock://" + testhelper.UniqueName(t, "registry"),
		topic:    testhelper.UniqueName(t, "customers"),
		group:    testhelper.UniqueName(t, "worker"),
		seed:     5,
		duration: 45 * time.Second,
	}
	var out syncbuf.Buffer
	if err := run(context.Background(), cfg, nil, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"read with schema v1: {ID:0 Name:customer 0}", "read with schema v1: {ID:4 Name:customer 4}", "stopped after 5 customers"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
