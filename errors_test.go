package zkafka

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestErrorsStartWithThePrefixOnce goes through the error paths a caller of the public API
// can reach — bad configurations, librdkafka's refusals, encoding, use after Close, a second
// Run, a dead broker — and checks that each error starts with "zkafka: " and holds it once.
// (The formatters' own paths are checked by TestFormatterErrorsStartWithThePrefixOnce.)
func TestErrorsStartWithThePrefixOnce(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := l.Addr().String()
	require.NoError(t, l.Close())

	errs := map[string]error{}
	c := NewClient(Config{BootstrapServers: []string{e.addr}}, LoggerOption(NoopLogger{}))
	ctx := t.Context()
	_, errs["Reader without GroupID"] = c.Reader(ctx, ConsumerTopicConfig{ClientID: "c", Topic: topic})
	_, errs["Reader with an unknown property"] = c.Reader(ctx, ConsumerTopicConfig{ClientID: "c1", GroupID: "g", Topic: topic,
		AdditionalProps: map[string]any{"no.such.property": 1}})
	_, errs["Writer with an unknown formatter"] = c.Writer(ctx, ProducerTopicConfig{ClientID: "p0", Topic: topic, Formatter: "nope"})
	_, errs["Writer with an invalid value"] = c.Writer(ctx, ProducerTopicConfig{ClientID: "p1", Topic: topic,
		AdditionalProps: map[string]any{"socket.timeout.ms": -1}})

	w, err := c.Writer(ctx, ProducerTopicConfig{ClientID: "p2", Topic: topic})
	require.NoError(t, err)
	_, errs["Write of a value JSON cannot encode"] = w.Write(ctx, make(chan int))
	w.Close()
	_, errs["Write after Close"] = w.Write(ctx, "x")

	r, err := c.Reader(ctx, ConsumerTopicConfig{ClientID: "c2", GroupID: "g", Topic: topic})
	require.NoError(t, err)
	require.NoError(t, r.Close())
	_, errs["Read after Close"] = r.Read(ctx)
	_, errs["Assignments after Close"] = r.(*KReader).Assignments(ctx)

	cfg := ConsumerTopicConfig{ClientID: "c3", GroupID: "g3", Topic: topic}
	block := make(chan struct{})
	started := make(chan struct{}, 1)
	work := NewWorkFactory(c).CreateWithFunc(cfg, func(context.Context, *Message) error { return nil },
		WithLifecycleHooks(LifecycleHooks{PostFanout: func(context.Context) { signal(started) }}))
	done := make(chan error, 1)
	go func() { done <- work.Run(ctx, block) }()
	<-started
	errs["a second concurrent Run"] = work.Run(ctx, nil)
	close(block)
	require.NoError(t, <-done)
	errs["Run without a topic"] = NewWorkFactory(c).CreateWithFunc(ConsumerTopicConfig{ClientID: "c4", GroupID: "g"},
		func(context.Context, *Message) error { return nil }).Run(ctx, nil)

	require.NoError(t, c.Close())
	_, errs["Reader after Client.Close"] = c.Reader(ctx, ConsumerTopicConfig{ClientID: "c5", GroupID: "g", Topic: topic})
	_, errs["Writer after Client.Close"] = c.Writer(ctx, ProducerTopicConfig{ClientID: "p3", Topic: topic})

	d := NewClient(Config{BootstrapServers: []string{dead}}, LoggerOption(NoopLogger{}))
	t.Cleanup(func() { _ = d.Close() })
	dw, err := d.Writer(ctx, ProducerTopicConfig{ClientID: "p4", Topic: topic})
	require.NoError(t, err)
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, errs["Write to a dead broker"] = dw.Write(wctx, "x")

	errs["ProcessError without Err"] = ProcessError{}
	for name, err := range errs {
		require.Error(t, err, name)
		require.True(t, strings.HasPrefix(err.Error(), errPrefix), "%s: %v", name, err)
		require.Equal(t, 1, strings.Count(err.Error(), errPrefix), "%s: %v", name, err)
	}
}
