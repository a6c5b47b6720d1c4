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

// TestStuckWatchReadStallLines: a partition that reads nothing gets one warning, one more per
// stuckRepeatEvery, a new one when a message then holds it, and an info line without an
// offset when it reads again.
func TestStuckWatchReadStallLines(t *testing.T) {
	logs := newCaptureLogger()
	sw := &stuckWatch{rs: &runState{w: &Work{logger: logs}}, reported: map[tpKey]stuckReport{}}
	t0 := time.Now()
	status := func(at time.Duration, stuck bool, held bool) Status {
		p := PartitionStatus{Topic: "t", Partition: 3, EndOffset: -1, CommittedOffset: -1}
		if stuck {
			p.Stuck, p.StuckReason, p.StandingSeconds = true, readStallReason+" for 12s: its end offset is unknown", 12
		}
		if held {
			p.Oldest = &OldestUnfinished{Offset: 4, WaitsFor: WaitHandler}
			p.StuckReason = "position has not moved for 12s"
		}
		return Status{TakenAt: t0.Add(at), Group: "g", StuckAfterSeconds: 10, Partitions: []PartitionStatus{p}}
	}
	var seen []string
	sw.check(status(0, true, false))
	lines := linesWith(logs, &seen, "warn zkafka: partition is stuck: it reads nothing while the broker has records for it")
	require.Len(t, lines, 1)
	for _, want := range []string{"topic t", "partition 3", "end_offset -1", "standing 12s", "its end offset is unknown", "renew_after 20s", "broker_reachable true"} {
		require.Contains(t, strings.ReplaceAll(lines[0], " | ", " "), want)
	}
	sw.check(status(stuckRepeatEvery-time.Second, true, false))
	require.Empty(t, logs.all(), "within stuckRepeatEvery: nothing")
	sw.check(status(stuckRepeatEvery, true, false))
	require.Len(t, linesWith(logs, &seen, "warn zkafka: partition is still stuck"), 1)
	sw.check(status(stuckRepeatEvery+time.Second, true, true))
	require.Len(t, linesWith(logs, &seen, "warn zkafka: partition is stuck: its oldest unfinished message holds the commit back"), 1)
	sw.check(status(stuckRepeatEvery+2*time.Second, false, false))
	moved := logs.all()
	require.Len(t, moved, 1)
	require.True(t, strings.HasPrefix(moved[0], "info zkafka: stuck partition moves again"))
	require.Contains(t, moved[0], "offset 4 | 4 |")
	sw.check(status(stuckRepeatEvery+3*time.Second, true, false))
	sw.check(status(stuckRepeatEvery+4*time.Second, false, false))
	moved = logs.all()
	require.Len(t, moved, 2)
	require.NotContains(t, moved[1], "offset", "reading nothing has no offset")
}
