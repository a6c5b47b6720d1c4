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

// TestAConsumerTheGroupRefusesIsLogged: a consumer-protocol member joins a group whose classic
// member works; kfake will not convert such a group and refuses the new member's heartbeats,
// which librdkafka retries silently. The Run says so once, after StuckAfter, and says when it
// joins: once the classic member has left, the broker converts the group and accepts it.
func TestAConsumerTheGroupRefusesIsLogged(t *testing.T) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 2)
	group := uniqueTestName(t, "g")
	classic := NewWorkFactory(e.client(t)).CreateWithFunc(ConsumerTopicConfig{ClientID: uniqueTestName(t, "a"), GroupID: group, Topic: topic,
		GroupProtocol: GroupProtocolClassic},
		func(context.Context, *Message) error { return nil })
	rc := startWork(t, classic)
	require.Eventually(t, func() bool { return len(classic.Status().Partitions) == 2 }, 30*time.Second, 10*time.Millisecond)

	logs := newCaptureLogger()
	c := NewClient(Config{BootstrapServers: []string{e.addr}}, LoggerOption(logs))
	t.Cleanup(func() { _ = c.Close() })
	refused := NewWorkFactory(c).CreateWithFunc(ConsumerTopicConfig{ClientID: uniqueTestName(t, "b"), GroupID: group, Topic: topic,
		GroupProtocol: GroupProtocolConsumer}, func(context.Context, *Message) error { return nil }, StuckAfter(2*time.Second))
	rr := startWork(t, refused)
	var lines []string
	require.Eventually(t, func() bool {
		lines = append(lines, logs.containing("not a member of its group")...)
		return len(lines) > 0
	}, 20*time.Second, 50*time.Millisecond, "the refused member is logged")
	require.Len(t, lines, 1)
	require.Contains(t, lines[0], "warn zkafka: the consumer is not a member of its group")
	require.Contains(t, lines[0], "consumer protocol needs Kafka 4.0 or later")

	require.NoError(t, rc.stop(t))
	var joined []string
	require.Eventually(t, func() bool {
		joined = append(joined, logs.containing("joined its group")...)
		return len(joined) > 0
	}, 60*time.Second, 50*time.Millisecond, "the member joins once the classic one left")
	require.Len(t, joined, 1)
	require.Contains(t, joined[0], "info zkafka: the consumer joined its group")
	require.NoError(t, rr.stop(t))
	require.Empty(t, logs.containing("not a member of its group"), "one warning for the whole wait")
}
