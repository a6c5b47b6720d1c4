package zkafka

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStuckPartitionIsLoggedOnceThenWhenItMoves: a key whose handler blocks holds its
// partition's commit; the user's Logger gets one warning naming the partition, the offset and
// the key, soon (G18), nothing more while it stays stuck, and one info line when it moves.
func TestStuckPartitionIsLoggedOnceThenWhenItMoves(t *testing.T) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, []rec{{Key: []byte("a")}, {Key: []byte("held-key")}, {Key: []byte("b")}})
	logs := newCaptureLogger()
	release := make(chan struct{})
	w := NewWorkFactory(e.client(t), WithLogger(logs)).CreateWithFunc(
		ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: uniqueTestName(t, "g"), Topic: topic},
		func(ctx context.Context, m *Message) error {
			if m.Key == "held-key" {
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			return nil
		}, Speedup(4), StuckAfter(300*time.Millisecond))
	checked := make(chan struct{}, 100)
	testHookStuckChecked = func() { checked <- struct{}{} }
	t.Cleanup(func() { testHookStuckChecked = nil })
	r := startWork(t, w)
	var seen []string
	const stuckLine = "warn zkafka: partition is stuck: its oldest unfinished message holds the commit back"
	var stuck []string
	require.Eventually(t, func() bool {
		stuck = linesWith(logs, &seen, stuckLine)
		return len(stuck) > 0
	}, 15*time.Second, 20*time.Millisecond, "a stuck offset is logged within 15 s (G18)")
	require.Len(t, stuck, 1)
	for _, want := range []string{topic, "held-key", "handler", "position has not moved for"} {
		require.Contains(t, stuck[0], want)
	}
	require.Contains(t, stuck[0], "offset 1 | 1 |", "the held message's offset")

	// Two more checks see it still stuck on the same message: no new line.
	for range 2 {
		<-checked
	}
	require.Len(t, linesWith(logs, &seen, "warn zkafka: partition is"), 1)

	close(release)
	require.Eventually(t, func() bool {
		return len(linesWith(logs, &seen, "info zkafka: stuck partition moves again")) == 1
	}, 15*time.Second, 20*time.Millisecond)
	require.NoError(t, r.stop(t))
	require.Len(t, linesWith(logs, &seen, "warn zkafka: partition is"), 1)
}

// TestStuckWatchLines: the lines each Status gives, for a new, a repeated, a longer, a moved
// and an ended stuck position, and none for a breaker that holds the partition.
func TestStuckWatchLines(t *testing.T) {
	logs := newCaptureLogger()
	sw := &stuckWatch{rs: &runState{w: &Work{logger: logs}}, reported: map[tpKey]stuckReport{}}
	t0 := time.Now()
	status := func(at time.Duration, reason string, offset int64) Status {
		p := PartitionStatus{Topic: "t", Partition: 3, StandingSeconds: 12}
		if reason != "" {
			p.Stuck, p.StuckReason = true, reason
			p.Oldest = &OldestUnfinished{Offset: offset, Key: "k", WaitsFor: WaitHandler}
		}
		return Status{TakenAt: t0.Add(at), Group: "g", Partitions: []PartitionStatus{p}}
	}
	levels := func() string {
		var ls []string
		for _, l := range logs.all() {
			ls = append(ls, strings.SplitN(l, " ", 2)[0]+":"+strings.Fields(l)[4])
		}
		return strings.Join(ls, ",")
	}
	const moved = "position has not moved for 12s"
	sw.check(status(0, moved, 7))
	require.Equal(t, "warn:stuck:", levels(), "new: one warning")
	sw.check(status(2*time.Second, moved, 7))
	sw.check(status(stuckRepeatEvery-time.Second, moved, 7))
	require.Empty(t, levels(), "same message, within stuckRepeatEvery: nothing")
	sw.check(status(stuckRepeatEvery, moved, 7))
	require.Equal(t, "warn:still", levels(), "same message, stuckRepeatEvery later: one line")
	sw.check(status(stuckRepeatEvery+time.Second, moved, 9))
	require.Equal(t, "warn:stuck:", levels(), "stuck on another message: a new warning")
	sw.check(status(stuckRepeatEvery+2*time.Second, "", 0))
	require.Equal(t, "info:moves", levels(), "moving again")
	sw.check(status(stuckRepeatEvery+3*time.Second, breakerStuckReason, 9))
	require.Empty(t, levels(), "an open breaker logs itself")
	require.Empty(t, sw.reported)
}
