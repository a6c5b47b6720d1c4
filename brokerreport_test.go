package zkafka

import (
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"
)

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
