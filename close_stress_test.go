package zkafka

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/zkafka-go/zkafka/testhelper"
)

// A worker stopped while its group rebalances must never abort the process inside librdkafka
// (G15): librdkafka asserts in rd_kafka_cgrp_terminated when an assignment change is still in
// progress as the consumer's close ends (its issue #4792). An abort kills the whole process,
// so the cycles run in a child process (this test binary again, TestCloseStressChild), and
// the parent counts the children that died by SIGABRT and the cycles that did not end.

const (
	// closeStressEnv carries a child's closeStressSpec (JSON); unset, the child test does
	// nothing.
	closeStressEnv = "ZKAFKA_CLOSE_STRESS_CHILD"
	// closeStressCyclesEnv sets the cycles per protocol (make close-stress: 500).
	closeStressCyclesEnv = "ZKAFKA_CLOSE_STRESS_CYCLES"
	// closeStressDefaultCycles keeps make test short.
	closeStressDefaultCycles = 3
	// closeStressHangAfter is how long a stopped worker's Run may take before its cycle counts
	// as a hang: a graceful stop takes at most closeMaxWait past its drain.
	closeStressHangAfter = 30 * time.Second
	// closeStressHangExit is the child's exit code after a hang.
	closeStressHangExit = 3
)

// closeStressSpec is what a child runs: cycles First to First+Count-1 of one protocol.
type closeStressSpec struct {
	Addr, Topic, Group, Protocol string
	First, Count                 int
}

// closeStressProtocols are the three rebalance protocols, as the consumer keys that select
// them.
var closeStressProtocols = []struct {
	name  string
	props map[string]any
}{
	{"eager", map[string]any{"partition.assignment.strategy": "range"}},
	{"cooperative", map[string]any{"partition.assignment.strategy": "cooperative-sticky"}},
	{"consumer", map[string]any{"group.protocol": "consumer"}},
}

// TestCloseDuringRebalanceNeverAborts stops workers of one group again and again while a
// rebalance is under way (the next worker joins as the last one stops, gracefully or by
// cancel, alternately), under each rebalance protocol, and requires no abort and no hang.
// ZKAFKA_CLOSE_STRESS_CYCLES sets the cycles per protocol (default closeStressDefaultCycles).
func TestCloseDuringRebalanceNeverAborts(t *testing.T) {
	cycles := closeStressDefaultCycles
	if s := os.Getenv(closeStressCyclesEnv); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, closeStressCyclesEnv)
		cycles = n
	}
	// The suite's watchdog (testRunsAtMost) would end make close-stress's 500 cycles, which
	// take about 25 minutes: the bound here is what the children's own deadlines allow.
	limit := max(testRunsAtMost, time.Duration(len(closeStressProtocols))*closeStressChildDeadline(cycles))
	// The consumer protocol's members learn of a new assignment by their heartbeats: Kafka's
	// 5 s interval would make each cycle last as long.
	e := envWithin(t, testhelper.NewBroker(t, kfake.BrokerConfigs(map[string]string{"group.consumer.heartbeat.interval.ms": "100"})), limit)
	for _, p := range closeStressProtocols {
		t.Run(p.name, func(t *testing.T) {
			topic := e.newTopic(t, 4)
			start := time.Now()
			aborts, hangs := runCloseStress(t, closeStressSpec{Addr: e.addr, Topic: topic, Protocol: p.name}, cycles)
			t.Logf("%s: %d cycles, %d aborts, %d hangs, %s", p.name, cycles, aborts, hangs, time.Since(start).Round(time.Second))
			require.Zero(t, aborts, "aborts")
			require.Zero(t, hangs, "hangs")
		})
	}
}

// runCloseStress runs cycles in children, a new one after each that aborted or hung, and
// counts those.
func runCloseStress(t *testing.T, spec closeStressSpec, cycles int) (aborts, hangs int) {
	for done := 0; done < cycles; {
		spec.First, spec.Count = done, cycles-done
		spec.Group = uniqueTestName(t, "close-"+spec.Protocol)
		js, err := json.Marshal(spec)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), closeStressChildDeadline(spec.Count))
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCloseStressChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), closeStressEnv+"="+string(js))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err = cmd.Run()
		cancel()
		if testing.Verbose() {
			t.Logf("%s: cycles %d to %d:\n%s", spec.Protocol, spec.First+1, spec.First+spec.Count, tail(stdout.String(), 10))
		}
		ok, hung := closeStressProgress(stdout.String())
		done += ok
		var exit *exec.ExitError
		switch {
		case err == nil:
			require.Equal(t, cycles, done, "a child that exits 0 ran all its cycles:\n%s", stdout.String())
		case closeStressAborted(err, stderr.String()):
			aborts++
			t.Logf("%s: abort in cycle %d:\n%s", spec.Protocol, done, tail(stderr.String(), 40))
			done++
		case hung || ctx.Err() != nil:
			hangs++
			t.Logf("%s: hang in cycle %d:\n%s", spec.Protocol, done, tail(stdout.String()+stderr.String(), 40))
			done++
		case errors.As(err, &exit):
			t.Fatalf("%s: child failed (%v) after %d cycles:\n%s\n%s", spec.Protocol, err, done, tail(stdout.String(), 60), tail(stderr.String(), 20))
		default:
			require.NoError(t, err)
		}
	}
	return aborts, hangs
}

// closeStressChildDeadline is how long a child running cycles cycles may take: twice the hang
// bound per cycle, and one more.
func closeStressChildDeadline(cycles int) time.Duration {
	return time.Duration(cycles+1) * 2 * closeStressHangAfter
}

// closeStressProgress reads a child's output: the cycles it finished and whether one hung.
func closeStressProgress(out string) (ok int, hung bool) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		switch f := strings.Fields(sc.Text()); {
		case len(f) >= 2 && f[0] == "closestress:" && f[1] == "ok":
			ok++
		case len(f) >= 2 && f[0] == "closestress:" && f[1] == "hang":
			hung = true
		}
	}
	return ok, hung
}

// closeStressAborted reports whether a child died by an abort: librdkafka's assertion, or
// SIGABRT however it was raised (the Go runtime turns one into exit status 2 with a dump).
func closeStressAborted(err error, stderr string) bool {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGABRT {
			return true
		}
	}
	return strings.Contains(stderr, "SIGABRT") || strings.Contains(stderr, ": assert: ")
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// stressWorker is one running Work of a child.
type stressWorker struct {
	w        *Work
	shutdown chan struct{}
	cancel   context.CancelFunc
	done     chan struct{}
	err      error
}

// TestCloseStressChild is the child process of TestCloseDuringRebalanceNeverAborts; it does
// nothing unless closeStressEnv is set. Cycle i starts worker i and, once worker i-1 has
// partitions, stops that one (gracefully for even i, by cancel for odd) 0 to 400 ms later,
// while worker i joins the group. It prints "closestress: ok i" when worker i-1's Run
// returned, or "closestress: hang i" and exits when it did not within closeStressHangAfter.
func TestCloseStressChild(t *testing.T) {
	js := os.Getenv(closeStressEnv)
	if js == "" {
		return
	}
	var spec closeStressSpec
	require.NoError(t, json.Unmarshal([]byte(js), &spec))
	var props map[string]any
	for _, p := range closeStressProtocols {
		if p.name == spec.Protocol {
			props = p.props
		}
	}
	require.NotNil(t, props, "protocol %q", spec.Protocol)
	client := NewClient(Config{BootstrapServers: []string{spec.Addr}})
	defer func() { require.NoError(t, client.Close()) }()
	wf := NewWorkFactory(client)
	start := func(i int) *stressWorker {
		cfg := ConsumerTopicConfig{ClientID: fmt.Sprintf("%s-%d", spec.Group, i), GroupID: spec.Group, Topic: spec.Topic,
			SessionTimeoutMillis: intp(int(testhelper.MinSessionTimeout.Milliseconds())), MaxPollIntervalMillis: intp(10000),
			AdditionalProps: props}
		if cfg.consumerProtocol() {
			cfg.SessionTimeoutMillis = nil // the broker owns it
		}
		w := wf.CreateWithFunc(cfg, func(context.Context, *Message) error { return nil }, Speedup(2))
		ctx, cancel := context.WithCancel(context.Background())
		sw := &stressWorker{w: w, shutdown: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(sw.done)
			sw.err = w.Run(ctx, sw.shutdown)
		}()
		return sw
	}
	stop := func(sw *stressWorker, i int, graceful bool) {
		if graceful {
			close(sw.shutdown)
		} else {
			sw.cancel()
		}
		select {
		case <-sw.done:
			sw.cancel()
		case <-time.After(closeStressHangAfter):
			fmt.Printf("closestress: hang %d\n", i)
			os.Exit(closeStressHangExit)
		}
		if graceful && sw.err != nil {
			t.Errorf("cycle %d: Run: %v", i, sw.err)
		}
	}
	assigned := func(sw *stressWorker) bool {
		deadline := time.Now().Add(closeStressHangAfter)
		for time.Now().Before(deadline) {
			if len(sw.w.Status().Partitions) > 0 {
				return true
			}
			select {
			case <-sw.done:
				fmt.Printf("closestress: Run returned by itself: %v\n", sw.err)
				os.Exit(1)
			case <-time.After(5 * time.Millisecond):
			}
		}
		return false
	}
	prev := start(spec.First)
	for i := spec.First + 1; i <= spec.First+spec.Count; i++ {
		testhelper.Produce(t, spec.Addr, spec.Topic, keyed(8, 8)...)
		if !assigned(prev) {
			fmt.Printf("closestress: hang %d (worker %d got no partitions)\n", i, i-1)
			os.Exit(closeStressHangExit)
		}
		next := start(i)
		joined := time.Now()
		// The stop lands at a different point of the rebalance each cycle: the members hear of
		// it at their next heartbeat, a third of the session timeout apart under the classic
		// protocols.
		if d := time.Duration(i%9) * 50 * time.Millisecond; d > 0 {
			time.Sleep(d)
		}
		stopping := time.Now()
		stop(prev, i, i%2 == 0)
		fmt.Printf("closestress: ok %d (stop began %s after the join, took %s)\n", i,
			stopping.Sub(joined).Round(time.Millisecond), time.Since(stopping).Round(time.Millisecond))
		prev = next
	}
	stop(prev, spec.First+spec.Count+1, true)
}
