package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zkafka-go/zkafka/examples/internal/syncbuf"
	"github.com/zkafka-go/zkafka/testhelper"
	_ "github.com/zkafka-go/zkafka/testhelper/container" // ZKAFKA_TESTCONTAINERS=1 may start Kafka in Docker
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWorkerDelayRetryChain(t *testing.T) {
	cfg := config{
		brokers:  testhelper.NewBroker(t).Addr(),
		prefix:   testhelper.UniqueName(t, "orders"),
		seed:     12,
		delay:    time.Second,
		duration: 45 * time.Second,
	}
	var out syncbuf.Buffer
	if err := run(context.Background(), cfg, nil, &out); err != nil {
		t.Fatal(err)
	}
	// Orders 1, 4, 7, 10 fail first; of those 4 and 10 fail again.
	if !strings.Contains(out.String(), "stopped: 12 orders processed, 4 retried, 2 dead for good") {
		t.Fatalf("output:\n%s", out.String())
	}
	for _, m := range regexp.MustCompile(`retried ([0-9.]+m?s) after`).FindAllStringSubmatch(out.String(), -1) {
		if d, _ := time.ParseDuration(m[1]); d < 900*time.Millisecond {
			t.Errorf("an order was retried %s after its failure, before the 1 s delay", d)
		}
	}
	if !strings.Contains(out.String(), "after attempt 2") {
		t.Errorf("no final dead letter with zkafka-attempt 2:\n%s", out.String())
	}
}
