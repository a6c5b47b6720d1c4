package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zkafka-go/zkafka/testhelper"
	_ "github.com/zkafka-go/zkafka/testhelper/container" // ZKAFKA_TESTCONTAINERS=1 may start Kafka in Docker
)

// TestReadmeShowsThisFile keeps the README's "Your first worker" the whole of main.go.
func TestReadmeShowsThisFile(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- file: examples/first-worker/main.go")
	if !ok {
		t.Fatal("README does not show examples/first-worker/main.go")
	}
	_, rest, _ = strings.Cut(rest, "```go\n")
	shown, _, ok := strings.Cut(rest, "```\n<!-- end file -->")
	if !ok {
		t.Fatal("README's copy of main.go has no end marker")
	}
	if shown != string(src) {
		t.Fatalf("README's copy of examples/first-worker/main.go differs from the file; paste the file into the README")
	}
}

// TestFirstWorkerPrintsAndStopsOnCtrlC builds the program, runs it against the test broker,
// waits for the order it was sent, interrupts it as Ctrl-C does and expects exit status 0.
func TestFirstWorkerPrintsAndStopsOnCtrlC(t *testing.T) {
	addr := testhelper.NewBroker(t).Addr()
	const topic = "zkafka-example-orders"
	testhelper.CreateTopic(t, addr, topic, 4)

	bin := filepath.Join(t.TempDir(), "first-worker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "KAFKA_BOOTSTRAP_SERVERS="+addr)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	id := int(time.Now().UnixNano() % 1_000_000_000)
	testhelper.Produce(t, addr, topic, testhelper.Record{
		Key:       []byte("ada"),
		Value:     fmt.Appendf(nil, `{"id":%d,"customer":"ada","amount":12.5}`, id),
		Partition: testhelper.AnyPartition,
	})
	want := fmt.Sprintf("order %d of ada: 12.50", id)
	lines := bufio.NewScanner(stdout)
	found := false
	for !found && lines.Scan() {
		found = lines.Text() == want
	}
	if !found {
		t.Fatalf("the worker did not print %q (%v, %v)", want, lines.Err(), ctx.Err())
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	go func() { // keep the pipe drained until the program exits
		for lines.Scan() {
		}
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after Ctrl-C the worker exited with %v, want status 0", err)
	}
}
