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
// within failureSummaryEvery are counted, and a timer due at the end of the window writes one
// summary with the count and the time of the last repeat, also when the failure has stopped
// by then. Failures of another kind are written on their own; close writes what is pending.
func TestFailureLogSummarisesRepeats(t *testing.T) {
	l := newCaptureLogger()
	f := newFailureLog(l)
	now := time.Unix(1000, 0)
	f.now = func() time.Time { return now }
	var due []time.Duration
	var fire func()
	f.after = func(d time.Duration, fn func()) func() bool {
		due, fire = append(due, d), fn
		return func() bool { fire = nil; return true }
	}
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
	require.Equal(t, []time.Duration{failureSummaryEvery - time.Second}, due, "one summary, due a window after the first line")

	lastRepeat := now
	now = now.Add(failureSummaryEvery)
	fire()
	lines = l.all()
	require.Len(t, lines, 1)
	require.True(t, strings.HasPrefix(lines[0], "error zkafka: down "), lines[0])
	require.Contains(t, lines[0], "repeated 20 ", "the summary counts every repeat since the first line")
	require.Contains(t, lines[0], "last "+lastRepeat.Format(time.RFC3339))
	require.Contains(t, lines[0], "after 19ns", "the summary carries the last occurrence's details")

	now = now.Add(time.Second)
	f.errorf(ctx, "zkafka: down", down)
	require.Empty(t, l.all(), "counted again until the next window")
	require.Len(t, due, 2)
	f.close()
	lines = l.all()
	require.Len(t, lines, 1, "close writes the pending summary")
	require.Contains(t, lines[0], "repeated 1 ")
	require.Nil(t, fire, "close stops the timer")

	now = now.Add(2 * failureSummaryEvery)
	f.errorf(ctx, "zkafka: down", down)
	f.errorf(ctx, "zkafka: down", down)
	require.Len(t, l.all(), 2, "after close every occurrence is written")
}

// TestBrokerFailure: the errors that mean the brokers cannot be used are told apart.
func TestBrokerFailure(t *testing.T) {
	require.True(t, brokerFailure(kafka.NewError(kafka.ErrAllBrokersDown, "down", false)))
	require.True(t, brokerFailure(kafka.NewError(kafka.ErrSaslAuthenticationFailed, "refused", false)))
	require.True(t, brokerFailure(kafka.NewError(kafka.ErrTopicAuthorizationFailed, "refused", false)))
	require.False(t, brokerFailure(kafka.NewError(kafka.ErrTransport, "reset", false)))
	require.True(t, brokerCause(kafka.NewError(kafka.ErrTransport, "reset", false)))
	require.True(t, brokerCause(kafka.NewError(kafka.ErrResolve, "no such host", false)))
	require.False(t, brokerCause(kafka.NewError(kafka.ErrAllBrokersDown, "down", false)))
	require.False(t, brokerFailure(errors.New("other")))
}
