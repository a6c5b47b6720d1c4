package zkafka

// What reaches the user's Logger, and how much of it: a logger given to the Client alone, the
// default logger's stderr, and panics that repeat (G18).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TestALoggerGivenOnlyToTheClientGetsTheFirstRunsFailures: a factory without a logger takes
// the Client's, before the Run's failure log is made: 100 skipped messages give two lines, the
// first at once and one summary of the other 99.
func TestALoggerGivenOnlyToTheClientGetsTheFirstRunsFailures(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, keyed(100, 4))
	group := uniqueTestName(t, "g")
	logs := newCaptureLogger()
	c := NewClient(Config{BootstrapServers: []string{e.addr}}, LoggerOption(logs))
	t.Cleanup(func() { _ = c.Close() })
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	w := NewWorkFactory(c).CreateWithFunc(cfg, func(context.Context, *Message) error {
		return PermanentError(errors.New("order has no customer"))
	})
	r := startWork(t, w)
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == 100 }, 60*time.Second, 20*time.Millisecond)
	require.NoError(t, r.stop(t))
	require.Equal(t, FailureCounts{Permanent: 100, Skipped: 100}, w.Status().Failures)
	skipped := logs.containing("skipping the message")
	require.Len(t, skipped, 2, "%q", skipped)
	require.NotContains(t, skipped[0], "repeated")
	require.Contains(t, skipped[1], "repeated 99 |")
}

// TestRepeatedPanicsAreSummarised: 100 messages whose processor panics give one line with the
// panic's stack and one summary with the count, not a line (and a stack) each.
func TestRepeatedPanicsAreSummarised(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, keyed(100, 4))
	group := uniqueTestName(t, "g")
	logs := newCaptureLogger()
	c := NewClient(Config{BootstrapServers: []string{e.addr}})
	t.Cleanup(func() { _ = c.Close() })
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	w := NewWorkFactory(c, WithLogger(logs)).CreateWithFunc(cfg, func(context.Context, *Message) error {
		panic("nil order")
	}, Speedup(4))
	r := startWork(t, w)
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == 100 }, 60*time.Second, 20*time.Millisecond)
	require.NoError(t, r.stop(t))
	require.Equal(t, FailureCounts{Permanent: 100, Skipped: 100}, w.Status().Failures)
	panics := logs.containing("panicked")
	require.Len(t, panics, 2, "%q", panics)
	require.Contains(t, panics[0], "nil order")
	require.Contains(t, panics[0], "runtime/debug.Stack", "the first with its stack")
	require.Contains(t, panics[1], "repeated 99 |")
	require.NotContains(t, panics[1], "runtime/debug.Stack", "the summary without one")
}

// defaultLoggerChildEnv names the broker address TestDefaultLoggerChild runs a Work against.
const defaultLoggerChildEnv = "ZKAFKA_DEFAULT_LOGGER_CHILD"

// TestNoLoggerStillWarnsOnStderr: a program that sets no logger, run against a dead broker,
// prints a warning or an error on stderr within 15 s.
func TestNoLoggerStillWarnsOnStderr(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	require.NoError(t, l.Close()) // nothing listens there now

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDefaultLoggerChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), defaultLoggerChildEnv+"="+dead)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	start := time.Now()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		line := lines.Text()
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			require.Contains(t, line, "zkafka: ")
			require.Less(t, time.Since(start), 15*time.Second, "the first warning came late: %s", line)
			t.Logf("after %s: %s", time.Since(start).Round(time.Millisecond), line)
			return
		}
	}
	t.Fatalf("no warning on stderr: %v", lines.Err())
}

// TestDefaultLoggerChild is the child of TestNoLoggerStillWarnsOnStderr: it runs a Work with
// no logger against a dead broker for 20 s. It does nothing unless defaultLoggerChildEnv is set.
func TestDefaultLoggerChild(t *testing.T) {
	addr := os.Getenv(defaultLoggerChildEnv)
	if addr == "" {
		return
	}
	c := NewClient(Config{BootstrapServers: []string{addr}})
	defer func() { _ = c.Close() }()
	w := NewWorkFactory(c).CreateWithFunc(ConsumerTopicConfig{ClientID: "child", GroupID: "child", Topic: "orders"},
		func(context.Context, *Message) error { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = w.Run(ctx, nil)
}

// TestAStopWithUnwrittenDeadLettersSaysSoInOneLine: twenty messages fail while their dead
// letter topic refuses writes; a graceful stop gives them up and says so in one line with
// their count and offsets, not a line each.
func TestAStopWithUnwrittenDeadLettersSaysSoInOneLine(t *testing.T) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 1)
	dlt := e.newTopic(t, 1)
	const n = 20
	var recs []rec
	for i := range n {
		recs = append(recs, rec{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprint(i))})
	}
	e.produce(t, topic, recs)
	fault := dltProduceFault(e, dlt, kerr.TopicAuthorizationFailed)
	logs := newCaptureLogger()
	c := NewClient(Config{BootstrapServers: []string{e.addr}}, LoggerOption(logs))
	t.Cleanup(func() { _ = c.Close() })
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: uniqueTestName(t, "g"), Topic: topic,
		DeadLetterTopicConfig: &ProducerTopicConfig{Topic: dlt}}
	var failed atomic.Int64
	w := NewWorkFactory(c).CreateWithFunc(cfg, func(context.Context, *Message) error {
		failed.Add(1)
		return errors.New("boom")
	}, Speedup(n), DisableCircuitBreaker())
	r := startWork(t, w)
	if !assert.Eventually(t, func() bool { return failed.Load() == n }, 30*time.Second, 10*time.Millisecond) {
		t.Fatalf("failed %d; status %+v", failed.Load(), w.Status())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, fault.Wait(ctx, 2)) // produce requests carry many dead letters
	require.NoError(t, r.stop(t))

	dropped := logs.containing("unwritten")
	require.Len(t, dropped, 1, "%q", dropped)
	require.Contains(t, dropped[0], "count 20 |")
	for i := range n {
		require.Contains(t, dropped[0], fmt.Sprintf("%s/0:%d", topic, i))
	}
}
