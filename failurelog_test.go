package zkafka

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"
)

// TestFailureLogSummarisesRepeats: the first occurrence of a failure is written, repeats
// within failureSummaryEvery are counted, and the next line after the window carries the
// count. Failures of another kind are written on their own.
func TestFailureLogSummarisesRepeats(t *testing.T) {
	l := newCaptureLogger()
	f := newFailureLog(l)
	now := time.Unix(1000, 0)
	f.now = func() time.Time { return now }
	down := kafka.NewError(kafka.ErrAllBrokersDown, "1/1 brokers are down", false)
	ctx := context.Background()

	f.errorf(ctx, "zkafka: down", down, "group", "g")
	for i := range 20 {
		now = now.Add(time.Second)
		f.errorf(ctx, "zkafka: down", kafka.NewError(kafka.ErrAllBrokersDown, "1/1 brokers are down after "+time.Duration(i).String(), false))
	}
	f.warnf(ctx, "zkafka: other", errors.New("boom"))
	lines := l.all()
	require.Len(t, lines, 2, "one line for the broker failure, one for the other failure")
	require.True(t, strings.HasPrefix(lines[0], "error zkafka: down "), lines[0])
	require.NotContains(t, lines[0], "repeated")
	require.True(t, strings.HasPrefix(lines[1], "warn zkafka: other "), lines[1])

	now = now.Add(failureSummaryEvery)
	f.errorf(ctx, "zkafka: down", down)
	lines = l.all()
	require.Len(t, lines, 1)
	require.Contains(t, lines[0], "repeated 20 ", "the summary counts every repeat since the last line")

	now = now.Add(time.Second)
	f.errorf(ctx, "zkafka: down", down)
	require.Empty(t, l.all(), "counted again until the next window")
}

// TestBrokerFailure: the errors that mean the brokers cannot be used are told apart.
func TestBrokerFailure(t *testing.T) {
	require.True(t, brokerFailure(kafka.NewError(kafka.ErrAllBrokersDown, "down", false)))
	require.True(t, brokerFailure(kafka.NewError(kafka.ErrSaslAuthenticationFailed, "refused", false)))
	require.True(t, brokerFailure(kafka.NewError(kafka.ErrTopicAuthorizationFailed, "refused", false)))
	require.False(t, brokerFailure(kafka.NewError(kafka.ErrTransport, "reset", false)))
	require.False(t, brokerFailure(errors.New("other")))
}

// TestDeadBrokerIsReportedOnceSoon: a Work and a Writer pointed at an address where no broker
// listens each report it through the Logger as one error within 15 s (G18), not as a flood.
func TestDeadBrokerIsReportedOnceSoon(t *testing.T) {
	logs := newCaptureLogger()
	c := NewClient(Config{BootstrapServers: []string{"127.0.0.1:1"}}, LoggerOption(logs))
	defer func() { _ = c.Close() }()
	w := NewWorkFactory(c).CreateWithFunc(ConsumerTopicConfig{ClientID: "dead", GroupID: "dead", Topic: "dead"},
		func(context.Context, *Message) error { return nil })
	r := startWork(t, w)
	start := time.Now()
	var seen []string
	require.Eventually(t, func() bool {
		for _, line := range logs.all() {
			if strings.HasPrefix(line, "error zkafka: consumer cannot use the brokers") {
				seen = append(seen, line)
			}
		}
		return len(seen) > 0
	}, 15*time.Second, 10*time.Millisecond, "the consumer reports the dead broker within 15 s")
	t.Logf("reported after %s: %.200s", time.Since(start).Round(time.Millisecond), seen[0])
	require.Contains(t, seen[0], "brokers are down")
	stopAt := time.Now()
	require.NoError(t, r.stop(t))
	t.Logf("stopped in %s", time.Since(stopAt).Round(time.Millisecond))

	wr, err := c.Writer(context.Background(), ProducerTopicConfig{ClientID: "dead-w", Topic: "dead"})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = wr.WriteRaw(ctx, nil, []byte("v"))
	require.Error(t, err)
	var producerLines int
	for _, line := range logs.all() {
		if strings.Contains(line, "zkafka: producer") {
			producerLines++
		}
	}
	require.LessOrEqual(t, producerLines, 2, "the producer's repeated failures are summarised, not logged four times a second")
}
