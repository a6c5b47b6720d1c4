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

func TestQuickstart(t *testing.T) {
	cfg := config{
		brokers:    testhelper.NewBroker(t).Addr(),
		runID:      testhelper.UniqueName(t, ""),
		messages:   5000,
		keys:       100,
		partitions: 4,
		speedup:    8,
		failEvery:  97,
		work:       time.Millisecond,
		timeout:    60 * time.Second,
		statusAddr: "127.0.0.1:0",
	}
	var out syncbuf.Buffer
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"status page: http://127.0.0.1:", "processed:          5000 of 5000", "dead-lettered:      52 read back", "per-key order kept: yes", "all good"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestQuickstartStopsAtDeadline(t *testing.T) {
	cfg := config{
		brokers: testhelper.NewBroker(t).Addr(), runID: testhelper.UniqueName(t, ""),
		messages: 2000, keys: 10, partitions: 2, speedup: 2, failEvery: 97,
		work: 50 * time.Millisecond, timeout: 5 * time.Second,
	}
	start := time.Now()
	err := run(context.Background(), cfg, &syncbuf.Buffer{})
	if err == nil {
		t.Fatal("run succeeded although it cannot finish within its deadline")
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("run took %s with a 5 s deadline", d)
	}
}
