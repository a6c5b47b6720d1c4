package zkafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

// brokerEvents records BrokerStateChanged calls.
type brokerEvents struct {
	ch chan LifecycleBrokerStateChanged
}

func newBrokerEvents() *brokerEvents {
	return &brokerEvents{ch: make(chan LifecycleBrokerStateChanged, 100)}
}

func (b *brokerEvents) hooks() LifecycleHooks {
	return LifecycleHooks{BrokerStateChanged: func(_ context.Context, m LifecycleBrokerStateChanged) { b.ch <- m }}
}

// next waits up to within for the next call.
func (b *brokerEvents) next(t *testing.T, within time.Duration) LifecycleBrokerStateChanged {
	t.Helper()
	select {
	case m := <-b.ch:
		return m
	case <-time.After(within):
		t.Fatalf("no BrokerStateChanged within %s", within)
		return LifecycleBrokerStateChanged{}
	}
}

// linesWith returns the lines that start with prefix, from every line logged so far, which it
// keeps in seen.
func linesWith(l *captureLogger, seen *[]string, prefix string) []string {
	*seen = append(*seen, l.all()...)
	var out []string
	for _, line := range *seen {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return out
}

// readerOf returns the Client's cached reader of clientID.
func readerOf(c *Client, clientID string) *KReader {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readers[clientID]
}

// TestDeadBrokerIsReportedOnceSoon: a Work pointed at an address where no broker listens, or
// at a host that does not resolve, reports it through the Logger as one error within 15 s
// (G18), runs its BrokerStateChanged hook, shows it in its reader's brokerHealth, keeps
// trying, and stops cleanly. librdkafka's own lines reach the Logger, not stderr.
func TestDeadBrokerIsReportedOnceSoon(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:1", "nohost.invalid:9092"} {
		t.Run(addr, func(t *testing.T) {
			logs := newCaptureLogger()
			c := NewClient(Config{BootstrapServers: []string{addr}}, LoggerOption(logs))
			defer func() { _ = c.Close() }()
			events := newBrokerEvents()
			w := NewWorkFactory(c).CreateWithFunc(ConsumerTopicConfig{ClientID: "dead", GroupID: "dead", Topic: "dead"},
				func(context.Context, *Message) error { return nil }, WithLifecycleHooks(events.hooks()))
			r := startWork(t, w)
			start := time.Now()
			var seen, errs []string
			require.Eventually(t, func() bool {
				errs = linesWith(logs, &seen, "error ")
				return len(errs) > 0
			}, 15*time.Second, 10*time.Millisecond, "the consumer reports the dead broker within 15 s")
			t.Logf("reported after %s: %.200s", time.Since(start).Round(time.Millisecond), errs[0])
			require.True(t, strings.HasPrefix(errs[0], "error zkafka: consumer cannot use the brokers; it keeps trying "), errs[0])

			ev := events.next(t, time.Second)
			require.False(t, ev.Reachable)
			require.Equal(t, "dead", ev.GroupID)
			require.Equal(t, "dead", ev.ClientID)
			require.Contains(t, errs[0], ev.Reason, "the hook and the log line give the same reason")
			reachable, reason, since := readerOf(c, "dead").brokerHealth()
			require.False(t, reachable)
			require.NotEmpty(t, reason)
			require.Equal(t, ev.Since, since)
			st := w.Status().Broker
			require.Equal(t, BrokerStatus{Known: true, Reachable: false, Error: reason, Since: since}, st, "Status says the brokers are unreachable, and why")

			// librdkafka keeps trying meanwhile; its own lines reach the Logger (a FAIL line,
			// which repeats an error event, at debug level).
			require.Eventually(t, func() bool {
				return len(linesWith(logs, &seen, "debug zkafka: librdkafka FAIL ")) > 0
			}, 15*time.Second, 10*time.Millisecond, "librdkafka's FAIL line reaches the Logger")
			require.Len(t, linesWith(logs, &seen, "error "), 1, "one error line for the outage")
			require.NoError(t, r.stop(t))
			errs = linesWith(logs, &seen, "error ")
			for _, line := range errs[1:] {
				require.Contains(t, line, "repeated ", "after the first error line, only its summary (written at Close)")
			}
			require.LessOrEqual(t, len(errs), 2)
			var warns int
			for _, w := range linesWith(logs, &seen, "warn ") {
				if !strings.Contains(w, "repeated ") {
					warns++
				}
			}
			require.LessOrEqual(t, warns, 1, "at most one transport warning, then its summary")
			select {
			case ev := <-events.ch:
				t.Fatalf("one transition only, got another: %+v", ev)
			default:
			}
		})
	}
}

// TestWriterAtDeadBrokerFailsWithinTheDeliveryTimeout: a write whose context has no deadline
// returns the delivery timeout's error (librdkafka's ErrMsgTimedOut, with why the brokers
// cannot be used), and the producer's repeating failures are one error line.
func TestWriterAtDeadBrokerFailsWithinTheDeliveryTimeout(t *testing.T) {
	logs := newCaptureLogger()
	c := NewClient(Config{BootstrapServers: []string{"127.0.0.1:1"}}, LoggerOption(logs))
	defer func() { _ = c.Close() }()
	timeout := 2000
	wr, err := c.Writer(context.Background(), ProducerTopicConfig{ClientID: "dead-w", Topic: "dead", DeliveryTimeoutMs: &timeout})
	require.NoError(t, err)
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := wr.WriteRaw(context.Background(), nil, []byte("v"))
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(time.Duration(timeout)*time.Millisecond + 5*time.Second):
		t.Fatal("a write without a deadline did not return after the delivery timeout")
	}
	t.Logf("returned after %s: %v", time.Since(start).Round(time.Millisecond), err)
	var kerr kafka.Error
	require.ErrorAs(t, err, &kerr)
	require.Equal(t, kafka.ErrMsgTimedOut, kerr.Code())
	require.Contains(t, err.Error(), "not delivered within the delivery timeout of 2s")
	require.Contains(t, err.Error(), "the brokers cannot be used since")
	require.Contains(t, err.Error(), "brokers are down")

	var seen []string
	require.Len(t, linesWith(logs, &seen, "error zkafka: producer cannot use the brokers; it keeps trying "), 1)
	require.LessOrEqual(t, len(linesWith(logs, &seen, "warn ")), 1, "no warning per attempt: at most one for the transport")
}

// TestWriterCloseDropsUndeliverableRecords: Close of a writer whose records cannot be
// delivered (no broker, librdkafka's 300 s delivery timeout) returns within
// closeUnreachableWait plus a little, says how many records it dropped, and fails their
// writes.
func TestWriterCloseDropsUndeliverableRecords(t *testing.T) {
	logs := newCaptureLogger()
	events := newBrokerEvents()
	c := NewClient(Config{BootstrapServers: []string{"127.0.0.1:1"}}, LoggerOption(logs), WithClientLifecycleHooks(events.hooks()))
	defer func() { _ = c.Close() }()
	wr, err := c.Writer(context.Background(), ProducerTopicConfig{ClientID: "dead-w", Topic: "dead"})
	require.NoError(t, err)
	const n = 3
	results := make(chan error, n)
	for range n {
		go func() {
			_, err := wr.WriteRaw(context.Background(), nil, []byte("v"))
			results <- err
		}()
	}
	ev := events.next(t, 15*time.Second)
	require.False(t, ev.Reachable, "the writer's hook hears that the brokers are down")
	require.Equal(t, "dead", ev.Topic)
	reachable, _, _ := wr.(*KWriter).brokerHealth()
	require.False(t, reachable)
	require.Eventually(t, func() bool {
		return wr.(*KWriter).producer.(queueLen).Len() >= n
	}, 5*time.Second, time.Millisecond, "all writes are queued")

	start := time.Now()
	err = c.Close()
	t.Logf("Close returned after %s: %v", time.Since(start).Round(time.Millisecond), err)
	require.ErrorContains(t, err, fmt.Sprintf("dropped %d undelivered records", n))
	for range n {
		require.Error(t, <-results)
	}
	var seen []string
	dropped := linesWith(logs, &seen, "error zkafka: closing writer dropped undelivered records ")
	require.Len(t, dropped, 1)
	require.Contains(t, dropped[0], fmt.Sprintf("dropped %d ", n))
}

// freePort returns a TCP port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// TestBrokerOutageAndRecoveryAreReported: a Work whose broker goes away reports it; when a
// broker listens again at the address, the consumer's probe finds it, the hook hears it and
// an info line says so.
func TestBrokerOutageAndRecoveryAreReported(t *testing.T) {
	watchdog(t)
	port := freePort(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	logs := newCaptureLogger()
	events := newBrokerEvents()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := NewClient(Config{BootstrapServers: []string{addr}}, LoggerOption(logs))
	defer func() { _ = c.Close() }()
	topic := uniqueName("outage")
	createTopic(t, addr, topic, 1)
	w := NewWorkFactory(c).CreateWithFunc(ConsumerTopicConfig{ClientID: "outage", GroupID: topic, Topic: topic},
		func(context.Context, *Message) error { return nil }, WithLifecycleHooks(events.hooks()))
	r := startWork(t, w)
	require.Eventually(t, func() bool {
		kr := readerOf(c, "outage")
		if kr == nil {
			return false
		}
		as, err := kr.Assignments(context.Background())
		return err == nil && len(as) == 1
	}, 30*time.Second, 10*time.Millisecond, "the Work joins the group")

	cluster.Close()
	down := events.next(t, 30*time.Second)
	require.False(t, down.Reachable)
	t.Logf("down: %s", down.Reason)

	again, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	defer again.Close()
	up := events.next(t, 30*time.Second)
	require.True(t, up.Reachable)
	require.Empty(t, up.Reason)
	require.True(t, up.Since.After(down.Since))
	reachable, _, _ := readerOf(c, "outage").brokerHealth()
	require.True(t, reachable)
	var seen []string
	require.Len(t, linesWith(logs, &seen, "info zkafka: consumer reaches the brokers again "), 1)
	require.NoError(t, r.stop(t))
}

// TestBadCredentialsAreReportedWithTheBrokersReason: a Work whose SASL password the broker
// refuses logs the refusal at error level with the broker's words, and its hook hears it.
// kfake (SCRAM) closes the connection; Apache Kafka's SASL listener of scripts/kafka-local.sh
// (ZKAFKA_SASL_BOOTSTRAP_SERVERS, PLAIN) answers that the login failed.
func TestBadCredentialsAreReportedWithTheBrokersReason(t *testing.T) {
	props := map[string]any{"security.protocol": "SASL_PLAINTEXT"}
	addr := os.Getenv("ZKAFKA_SASL_BOOTSTRAP_SERVERS")
	if addr == "" || os.Getenv("KAFKA_BOOTSTRAP_SERVERS") == "" {
		cluster := newKfake(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "admin", "admin"))
		addr = strings.Join(cluster.ListenAddrs(), ",")
	} else {
		props["sasl.mechanism"] = "PLAIN"
	}
	logs := newCaptureLogger()
	events := newBrokerEvents()
	user, pass := "admin", "wrong"
	c := NewClient(Config{BootstrapServers: []string{addr}, SaslUsername: &user, SaslPassword: &pass}, LoggerOption(logs))
	defer func() { _ = c.Close() }()
	w := NewWorkFactory(c).CreateWithFunc(ConsumerTopicConfig{ClientID: "sasl", GroupID: "sasl", Topic: "sasl",
		AdditionalProps: props},
		func(context.Context, *Message) error { return nil }, WithLifecycleHooks(events.hooks()))
	r := startWork(t, w)
	ev := events.next(t, 15*time.Second)
	t.Logf("refused: %s", ev.Reason)
	require.False(t, ev.Reachable)
	require.Contains(t, strings.ToLower(ev.Reason), "authentication")
	if props["sasl.mechanism"] == "PLAIN" {
		require.Contains(t, ev.Reason, "Invalid username or password", "Apache Kafka's own words")
	}
	var seen []string
	errs := linesWith(logs, &seen, "error zkafka: consumer cannot use the brokers; it keeps trying ")
	require.Len(t, errs, 1)
	require.Contains(t, errs[0], ev.Reason)
	require.NotContains(t, strings.Join(seen, "\n"), pass, "no secret in the logs (G13)")
	require.NoError(t, r.stop(t))
}

// TestUnknownTopicIsReportedWithTheBrokersReason: a Work subscribed to a topic the broker does
// not have (and will not create) logs it at error level with the broker's words.
func TestUnknownTopicIsReportedWithTheBrokersReason(t *testing.T) {
	cluster := newKfake(t) // no automatic topic creation
	addr := strings.Join(cluster.ListenAddrs(), ",")
	logs := newCaptureLogger()
	c := NewClient(Config{BootstrapServers: []string{addr}}, LoggerOption(logs))
	defer func() { _ = c.Close() }()
	w := NewWorkFactory(c).CreateWithFunc(ConsumerTopicConfig{ClientID: "missing", GroupID: "missing", Topic: "missing"},
		func(context.Context, *Message) error { return nil })
	r := startWork(t, w)
	var seen, errs []string
	require.Eventually(t, func() bool {
		errs = linesWith(logs, &seen, "error zkafka: consumer cannot read a topic; it keeps trying ")
		return len(errs) > 0
	}, 60*time.Second, 10*time.Millisecond)
	t.Logf("%.300s", errs[0])
	require.Contains(t, errs[0], "Unknown topic or partition")
	require.NoError(t, r.stop(t))
}

// TestFailedReadsAreLoggedOnceThenSummarised: a Reader that fails every read is logged with
// v2's words once, then summarised; each failure still counts toward the breaker.
func TestFailedReadsAreLoggedOnceThenSummarised(t *testing.T) {
	logs := newCaptureLogger()
	var mu sync.Mutex
	fanouts := 0
	enough := make(chan struct{})
	w := NewWorkFactory(FakeClient{R: &failingReader{err: errors.New("broker gone")}}, WithLogger(logs)).CreateWithFunc(
		ConsumerTopicConfig{ClientID: "c", GroupID: "g", Topic: "t"},
		func(context.Context, *Message) error { return nil },
		WithLifecycleHooks(LifecycleHooks{PostFanout: func(context.Context) {
			mu.Lock()
			defer mu.Unlock()
			if fanouts++; fanouts == 20 {
				close(enough)
			}
		}}), DisableCircuitBreaker())
	r := startWork(t, w)
	<-enough
	var seen []string
	require.Len(t, linesWith(logs, &seen, "warn Kafka worker read message failed "), 1)
	require.NoError(t, r.stop(t))
	lines := linesWith(logs, &seen, "warn Kafka worker read message failed ")
	require.Len(t, lines, 2, "the first failure, then the summary the stop writes")
	require.Contains(t, lines[1], "repeated ")
}

// failingReader fails every Read.
type failingReader struct{ err error }

func (r *failingReader) Read(context.Context) (*Message, error) { return nil, r.err }
func (r *failingReader) Close() error                           { return nil }

// TestBrokerReport: librdkafka's pieces of an outage become one transition and one error line
// whose reason says why, in whichever order they come; a connection error that no outage
// follows is one warning; other errors are left to the caller.
func TestBrokerReport(t *testing.T) {
	down := kafka.NewError(kafka.ErrAllBrokersDown, "1/1 brokers are down", false)
	refused := kafka.NewError(kafka.ErrTransport, "b:9092/bootstrap: Connect to b:9092 failed: Connection refused", false)
	auth := kafka.NewError(kafka.ErrAuthentication, "SASL authentication error: invalid credentials", false)
	topicDenied := kafka.NewError(kafka.ErrTopicAuthorizationFailed, "Topic authorization failed", false)
	tests := []struct {
		name     string
		events   []kafka.Error
		settle   bool   // settle(true) after the events
		reason   string // "" : still reachable
		probed   bool   // the way back is looked for by a probe
		warnings int    // events left to the caller
		warned   bool   // one warning line of its own
	}{
		{name: "connection error alone", events: []kafka.Error{refused}, settle: true, warned: true},
		{name: "connection error waiting", events: []kafka.Error{refused}},
		{name: "cause first", events: []kafka.Error{refused, down}, settle: true, reason: "1/1 brokers are down; last broker error: " + refused.Error(), probed: true},
		{name: "none counted yet", events: []kafka.Error{kafka.NewError(kafka.ErrAllBrokersDown, "0/1 brokers are down", false)}, settle: true,
			reason: "all brokers are down", probed: true},
		{name: "cause just after", events: []kafka.Error{down, refused}, reason: "1/1 brokers are down; last broker error: " + refused.Error(), probed: true},
		{name: "no cause", events: []kafka.Error{down}, settle: true, reason: "1/1 brokers are down", probed: true},
		{name: "no cause yet", events: []kafka.Error{down}},
		{name: "refusal after down", events: []kafka.Error{down, auth}, settle: true, reason: auth.Error(), probed: true},
		{name: "authorisation", events: []kafka.Error{topicDenied}, reason: topicDenied.Error()},
		{name: "other errors", events: []kafka.Error{kafka.NewError(kafka.ErrUnknownTopicOrPart, "x", false)}, warnings: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := newCaptureLogger()
			var transitions []string
			watch := newBrokerWatch(nil)
			watch.setListener(func(reachable bool, reason string, _ time.Time) {
				require.False(t, reachable)
				transitions = append(transitions, reason)
			})
			probed := false
			b := &brokerReport{watch: watch, failures: newFailureLog(logs), msg: "zkafka: down", warn: "zkafka: warn", kv: []any{"who", "me"},
				probe: func(code kafka.ErrorCode) func() bool {
					if code == kafka.ErrTopicAuthorizationFailed {
						return nil
					}
					probed = true
					return func() bool { return false }
				}}
			warnings := 0
			for _, e := range tt.events {
				if !b.event(e) {
					warnings++
				}
			}
			if tt.settle {
				b.settle(true)
			}
			watch.stopProbe()
			require.Equal(t, tt.warnings, warnings)
			require.Equal(t, tt.probed, probed)
			reachable, reason, _ := watch.get()
			if tt.reason == "" {
				require.True(t, reachable)
				require.Empty(t, transitions)
				lines := logs.all()
				if !tt.warned {
					require.Empty(t, lines)
					return
				}
				require.Len(t, lines, 1)
				require.True(t, strings.HasPrefix(lines[0], "warn zkafka: warn who "), lines[0])
				return
			}
			require.False(t, reachable)
			require.Equal(t, tt.reason, reason)
			require.Equal(t, []string{tt.reason}, transitions, "one transition")
			lines := logs.all()
			require.Len(t, lines, 1, "one error line; what follows is counted")
			require.True(t, strings.HasPrefix(lines[0], "error zkafka: down who "), lines[0])
			require.Contains(t, lines[0], tt.reason)
		})
	}
}

// TestBrokerWatchTransitions: a watch starts reachable; a failure cuts it off once (the first
// reason stays), a sign of life brings it back once and tells the owner what ended.
func TestBrokerWatchTransitions(t *testing.T) {
	var ended []string
	w := newBrokerWatch(func(_ bool, reason string, _ time.Time) { ended = append(ended, reason) })
	var seen []bool
	w.setListener(func(reachable bool, _ string, _ time.Time) { seen = append(seen, reachable) })
	require.False(t, w.alive(), "reachable already")
	require.True(t, w.failed("first", nil))
	require.False(t, w.failed("second", nil))
	_, reason, since := w.get()
	require.Equal(t, "first", reason)
	require.True(t, w.alive())
	require.False(t, w.alive())
	reachable, reason, back := w.get()
	require.True(t, reachable)
	require.Empty(t, reason)
	require.False(t, back.Before(since))
	require.Equal(t, []bool{false, true}, seen)
	require.Equal(t, []string{"first"}, ended)
	w.stopProbe()
	w.stopProbe()
}

// TestBrokerWatchProbeFindsTheWayBack: while cut off, the probe runs until it succeeds; then
// the watch is reachable and the probe goroutine has ended.
func TestBrokerWatchProbeFindsTheWayBack(t *testing.T) {
	w := newBrokerWatch(nil)
	back := make(chan struct{})
	w.setListener(func(reachable bool, _ string, _ time.Time) {
		if reachable {
			close(back)
		}
	})
	calls := 0
	w.failed("down", func() bool { calls++; return calls == 2 })
	select {
	case <-back:
	case <-time.After(10 * brokerProbeEvery):
		t.Fatal("the probe did not bring the watch back")
	}
	w.stopProbe()
	require.Equal(t, 2, calls)
}

// TestBrokerReportSignOfLifeDropsAWaitingOutage: an all-brokers-down event still waiting for
// its cause when a message arrives is not announced later.
func TestBrokerReportSignOfLifeDropsAWaitingOutage(t *testing.T) {
	logs := newCaptureLogger()
	b := &brokerReport{watch: newBrokerWatch(nil), failures: newFailureLog(logs), msg: "zkafka: down"}
	require.True(t, b.event(kafka.NewError(kafka.ErrAllBrokersDown, "1/1 brokers are down", false)))
	require.True(t, b.waiting.Load())
	b.alive()
	b.settle(true)
	reachable, _, _ := b.watch.get()
	require.True(t, reachable)
	require.Empty(t, logs.all())
}

// TestBrokerReportSummarisesAnOutageBeforeItsEnd: the repeats of an outage are summarised
// before the line that says the brokers are back, never after it.
func TestBrokerReportSummarisesAnOutageBeforeItsEnd(t *testing.T) {
	logs := newCaptureLogger()
	var b *brokerReport
	watch := newBrokerWatch(func(bool, string, time.Time) {
		b.flush()
		logs.Infow(t.Context(), "zkafka: back")
	})
	b = &brokerReport{watch: watch, failures: newFailureLog(logs), msg: "zkafka: down", warn: "zkafka: warn"}
	refused := kafka.NewError(kafka.ErrTransport, "b:9092/bootstrap: Connect to b:9092 failed: Connection refused", false)
	require.True(t, b.event(refused))
	require.True(t, b.event(kafka.NewError(kafka.ErrAllBrokersDown, "1/1 brokers are down", false)))
	for range 5 {
		require.True(t, b.event(refused))
	}
	b.alive()
	watch.stopProbe()
	lines := logs.all()
	require.Len(t, lines, 3, "%q", lines)
	require.True(t, strings.HasPrefix(lines[0], "error zkafka: down "), lines[0])
	require.True(t, strings.HasPrefix(lines[1], "error zkafka: down "), lines[1])
	require.Contains(t, lines[1], "repeated 5 ")
	require.Equal(t, "info zkafka: back", lines[2])
	b.failures.close()
	require.Empty(t, logs.all(), "nothing left to summarise")
}
