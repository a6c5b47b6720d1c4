package zkafka

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestReaderDoneInAnyOrderCommitsTheFinishedPrefix reads three messages and finishes them out
// of order: the committed offset only moves past a message once it and all before it are done.
func TestReaderDoneInAnyOrderCommitsTheFinishedPrefix(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, []rec{{Value: []byte(`1`)}, {Value: []byte(`2`)}, {Value: []byte(`3`)}})
	group := uniqueTestName(t, "g")
	client := e.client(t)
	ctx := context.Background()
	r, err := client.Reader(ctx, ConsumerTopicConfig{ClientID: uniqueTestName(t, "r"), GroupID: group, Topic: topic})
	require.NoError(t, err)
	var msgs []*Message
	for len(msgs) < 3 {
		m, err := r.Read(ctx)
		require.NoError(t, err)
		if m != nil {
			msgs = append(msgs, m)
		}
	}
	kr := r.(*KReader)
	msgs[2].Done()
	msgs[1].Done()
	require.NoError(t, kr.commit())
	require.Equal(t, map[int32]int64{0: 0}, e.committed(t, group, topic), "offset 0 is not done: the commit may not pass it")
	c := e.completions(t, group, topic)[0]
	require.NotNil(t, c, "the metadata says what is finished above the committed offset")
	require.Equal(t, []uint64{1, 2}, c.Runs, "offset 0 unfinished, 1 and 2 finished")
	msgs[0].Done()
	require.NoError(t, kr.commit())
	require.Equal(t, map[int32]int64{0: 3}, e.committed(t, group, topic))
	assignments, err := kr.Assignments(ctx)
	require.NoError(t, err)
	require.Equal(t, []Assignment{{Topic: topic, Partition: 0}}, assignments)
	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "Close twice is fine")
}

// TestG6PausedPartitionsAreReadAgainAfterAnEagerRebalance: a Work paused at its in-flight bound
// when an eager rebalance revokes everything (the revoke drops the queued messages, so the
// reader resumes while it owns nothing) must read the partitions it gets back. librdkafka
// keeps a partition's pause across Unassign and Assign; unless the revoke lifts the pause
// before it unassigns (rebalance.go), those partitions stay paused and are never read again
// by this member.
func TestG6PausedPartitionsAreReadAgainAfterAnEagerRebalance(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 2)
	const n = 400
	e.produce(t, topic, keyed(n, 50))
	group := uniqueTestName(t, "g")
	ko := newKeyOrder()
	var paused atomic.Int64
	testHookSetPaused = func(p bool) {
		if p {
			paused.Add(1)
		}
	}
	t.Cleanup(func() { testHookSetPaused = nil })
	revoked := make(chan struct{})
	var once sync.Once
	logger := &onLog{msg: "zkafka: partitions revoked", f: func() { once.Do(func() { close(revoked) }) }}
	c := NewClient(Config{BootstrapServers: []string{e.addr}}, LoggerOption(logger))
	t.Cleanup(func() { _ = c.Close() })
	wf := NewWorkFactory(c)
	mk := func(id string, gate <-chan struct{}) *Work {
		cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, id), GroupID: group, Topic: topic,
			SessionTimeoutMillis: intp(6000), MaxPollIntervalMillis: intp(6000),
			AdditionalProps: map[string]any{"partition.assignment.strategy": "range"}}
		return wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
			<-gate
			ko.begin(m)
			ko.end(m)
			return nil
		}, MaxInFlight(100))
	}
	// w1's first message blocks until its partitions are revoked: its bound fills and it
	// pauses, and the revoke finds it paused.
	r1 := startWork(t, mk("w1", revoked))
	require.Eventually(t, func() bool { return paused.Load() > 0 }, 30*time.Second, time.Millisecond, "w1 pauses at its bound")
	open := make(chan struct{})
	close(open)
	r2 := startWork(t, mk("w2", open))
	require.Eventually(t, func() bool { return ko.count.Load() == n }, 60*time.Second, 10*time.Millisecond,
		"every message is processed while both workers run")
	require.NoError(t, r1.stop(t))
	require.NoError(t, r2.stop(t))
	// (The message w1 held through the revoke's deadline is processed twice, by design: its
	// partition's next owner read it again.)
	require.Equal(t, e.endOffsets(t, topic), e.committed(t, group, topic))
}

// onLog is a Logger that calls f when msg is logged at info level.
type onLog struct {
	NoopLogger
	msg string
	f   func()
}

func (l *onLog) Infow(_ context.Context, msg string, _ ...any) {
	if msg == l.msg {
		l.f()
	}
}
