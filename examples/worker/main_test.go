package main

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zkafka-go/zkafka/examples/internal/syncbuf"
	"github.com/zkafka-go/zkafka/testhelper"
	_ "github.com/zkafka-go/zkafka/testhelper/container" // ZKAFKA_TESTCONTAINERS=1 may start Kafka in Docker
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testConfig(t *testing.T) config {
	return config{
		brokers: testhelper.NewBroker(t).Addr(),
		topic:   testhelper.UniqueName(t, "orders"),
		group:   testhelper.UniqueName(t, "worker"),
		seed:    20,
		drain:   10 * time.Second,

		statusAddr: "127.0.0.1:0",
	}
}

func TestWorkerProcessesAndCommits(t *testing.T) {
	cfg := testConfig(t)
	cfg.maxMessages = 20
	cfg.duration = 40 * time.Second
	var out syncbuf.Buffer
	if err := run(context.Background(), cfg, nil, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "stopped after processing 20 orders") || !strings.Contains(out.String(), "status page: http://127.0.0.1:") {
		t.Fatalf("output:\n%s", out.String())
	}
	var committed int64
	for _, off := range testhelper.CommittedOffsets(t, cfg.brokers, cfg.group, cfg.topic) {
		committed += off
	}
	if committed != 20 {
		t.Fatalf("committed offsets add up to %d, want 20", committed)
	}
}

func TestWorkerStopsOnSIGTERM(t *testing.T) {
	cfg := testConfig(t)
	signals := make(chan os.Signal, 1)
	go func() {
		time.Sleep(2 * time.Second)
		signals <- syscall.SIGTERM
	}()
	start := time.Now()
	if err := run(context.Background(), cfg, signals, &syncbuf.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > cfg.drain {
		t.Fatalf("stopping took %s", d)
	}
}
