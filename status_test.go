package zkafka

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
)

// stuckKey is the key the status tests' handlers block on. It has characters HTML must
// escape, so the page tests see that keys are escaped.
const stuckKey = `stuck<b>&"key`

// stuckScenario is a Work on the embedded broker whose handler blocks on stuckKey until the
// test ends: partition 0 holds "a", "b", stuckKey, "c", "d" (offsets 0-4), partition 1 holds
// "e", "f". Everything but offset 2 of partition 0 finishes.
type stuckScenario struct {
	e       *testEnv
	w       *Work
	topic   string
	group   string
	release chan struct{}
	done    atomic.Int64
}

func newStuckScenario(t *testing.T, opts ...WorkOption) *stuckScenario {
	t.Helper()
	e := newEmbeddedEnv(t)
	s := &stuckScenario{e: e, topic: e.newTopic(t, 2), group: uniqueTestName(t, "g"), release: make(chan struct{})}
	var recs []rec
	for i, k := range []string{"a", "b", stuckKey, "c", "d"} {
		recs = append(recs, rec{Key: []byte(k), Value: []byte{byte('0' + i)}, Partition: 0})
	}
	recs = append(recs, rec{Key: []byte("e"), Partition: 1}, rec{Key: []byte("f"), Partition: 1})
	e.produce(t, s.topic, recs)
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: s.group, Topic: s.topic,
		AutoCommitIntervalMs: intp(100)}
	s.w = NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		if m.Key == stuckKey {
			select {
			case <-s.release:
			case <-ctx.Done():
			}
			return nil
		}
		s.done.Add(1)
		return nil
	}, append([]WorkOption{Speedup(8), StuckAfter(300 * time.Millisecond)}, opts...)...)
	r := startWork(t, s.w)
	t.Cleanup(func() {
		close(s.release)
		require.NoError(t, r.stop(t))
	})
	return s
}

// partition returns partition p of st, failing the test when it is not assigned.
func partition(t *testing.T, st Status, p int32) PartitionStatus {
	t.Helper()
	for _, ps := range st.Partitions {
		if ps.Partition == p {
			return ps
		}
	}
	t.Fatalf("partition %d not in %+v", p, st.Partitions)
	return PartitionStatus{}
}

// TestStatusStuckKey: a handler blocks on one key. Status names that message as partition 0's
// oldest unfinished one, in the handler, holds the stored offset below it, calls partition 0
// stuck after StuckAfter and partition 1 not, and reports the group membership.
func TestStatusStuckKey(t *testing.T) {
	// Speedup(8) for 7 keys: each key gets a virtual partition of its own (the router puts a
	// new key on the least loaded), so no other key waits behind the stuck one. With 4, a key
	// read in the same batch could share the stuck key's (seen in CI: 5 of 6 finished).
	s := newStuckScenario(t)
	var last Status
	require.Eventually(t, func() bool {
		last = s.w.Status()
		return s.done.Load() == 6 && len(last.Partitions) == 2 && partition(t, last, 0).Stuck &&
			partition(t, last, 0).CommittedOffset == 2 && partition(t, last, 1).CommittedOffset == 2
	}, 30*time.Second, 20*time.Millisecond, "done %d; last status: %+v", &s.done, &last)

	st := s.w.Status()
	require.True(t, st.Running)
	require.False(t, st.Stopping)
	require.True(t, st.Stuck())
	require.Equal(t, s.group, st.Group)
	require.Equal(t, []string{s.topic}, st.Topics)
	require.NotEmpty(t, st.MemberID)
	require.GreaterOrEqual(t, st.Generation, int32(1))
	require.Equal(t, "closed", st.Breaker)
	require.False(t, st.Paused)
	require.Equal(t, InFlightStatus{Messages: 1, Bytes: 1, MaxMessages: 10000, MaxBytes: 256 << 20}, st.InFlight)
	require.Equal(t, 8, st.VirtualPartitions)
	require.True(t, st.Broker.Known && st.Broker.Reachable, "the consumer reads: its brokers are reachable: %+v", st.Broker)

	p0 := partition(t, st, 0)
	require.Equal(t, s.topic, p0.Topic)
	require.Equal(t, int64(2), p0.StoredOffset)
	require.Equal(t, int64(5), p0.EndOffset)
	require.Equal(t, int64(3), p0.Lag)
	require.Equal(t, 1, p0.Unfinished)
	require.Contains(t, p0.StuckReason, "position has not moved for")
	require.GreaterOrEqual(t, p0.StandingSeconds, 0.3)
	o := p0.Oldest
	require.NotNil(t, o)
	require.Equal(t, int64(2), o.Offset)
	require.Equal(t, stuckKey, o.Key)
	require.Equal(t, WaitHandler, o.WaitsFor)
	require.Contains(t, o.Detail, "in the handler for")
	require.GreaterOrEqual(t, o.VirtualPartition, 0)
	require.Less(t, o.VirtualPartition, 8)
	require.False(t, o.ReadAt.IsZero())
	require.False(t, o.Since.Before(o.ReadAt), "the handler started after the read")
	require.GreaterOrEqual(t, o.AgeSeconds, o.WaitingSeconds)

	p1 := partition(t, st, 1)
	require.False(t, p1.Stuck)
	require.Nil(t, p1.Oldest)
	require.Equal(t, int64(2), p1.StoredOffset)
	require.Equal(t, int64(2), p1.EndOffset)
	require.Equal(t, int64(0), p1.Lag)
	require.Zero(t, p1.Unfinished)
}

// TestStatusPausedPartition: with one virtual partition and room for two messages in flight,
// the stuck message and the next one fill the bound and the reader pauses every partition.
// Status says so and why, and a queued message is described with what its virtual
// partition is busy with.
func TestStatusPausedPartition(t *testing.T) {
	// MaxInFlight 2: the stuck message and one more fill the bound; the reader pauses.
	s := newStuckScenario(t, Speedup(1), MaxInFlight(2))
	require.Eventually(t, func() bool {
		st := s.w.Status()
		return st.Paused && len(st.Partitions) == 2 && partition(t, st, 0).Paused && partition(t, st, 1).Paused
	}, 30*time.Second, 20*time.Millisecond)
	st := s.w.Status()
	require.Equal(t, PausedInFlightBound, st.PausedBecause)
	require.Equal(t, int64(2), st.InFlight.Messages)
	p0 := partition(t, st, 0)
	require.Equal(t, int64(2), p0.Oldest.Offset)
	require.Equal(t, WaitHandler, p0.Oldest.WaitsFor)
	require.Equal(t, 0, p0.Oldest.VirtualPartition)
}

// TestStatusQueuedBehindAStuckHandler: with one virtual partition, a message of partition 1
// read after the handler got stuck waits in the queue; Status names it as partition 1's
// oldest and says what the virtual partition is busy with.
func TestStatusQueuedBehindAStuckHandler(t *testing.T) {
	s := newStuckScenario(t, Speedup(1))
	// Wait for the stuck handler itself. Partition 0 is also called stuck, earlier, when a and
	// b are read and the rest of the partition is read StuckAfter later (a read stall). Seen
	// in CI under the consumer protocol: e, f and g were then read ahead of the stuck message,
	// finished, and partition 1 had nothing queued.
	var last Status
	require.Eventually(t, func() bool {
		last = s.w.Status()
		if len(last.Partitions) != 2 {
			return false
		}
		p0 := partition(t, last, 0)
		return p0.Stuck && p0.Oldest != nil && p0.Oldest.Offset == 2 && p0.Oldest.WaitsFor == WaitHandler
	}, 30*time.Second, 20*time.Millisecond, "last status: %+v", &last)
	s.e.produce(t, s.topic, []rec{{Key: []byte("g"), Partition: 1}})
	require.Eventually(t, func() bool {
		last = s.w.Status()
		p1 := partition(t, last, 1)
		return p1.Oldest != nil && p1.Oldest.WaitsFor == WaitQueued && p1.Stuck
	}, 30*time.Second, 20*time.Millisecond, "last status: %+v", &last)
	p1 := partition(t, s.w.Status(), 1)
	require.Equal(t, 0, p1.Oldest.VirtualPartition)
	require.Regexp(t, `^queued on virtual partition 0 behind \d messages; it is busy with `+s.topic+
		`/0 offset 2 \(key "stuck<b>&\\"key"\) in the handler for \S+$`, p1.Oldest.Detail)
}

// TestStatusRetryBackoff: a message whose handler failed waits for its retry; Status names
// it with its failure count, error and due time, and the later message of its key waits
// behind it.
func TestStatusRetryBackoff(t *testing.T) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, []rec{{Key: []byte("a")}, {Key: []byte("k")}, {Key: []byte("b")}, {Key: []byte("k")}})
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: uniqueTestName(t, "g"), Topic: topic}
	var others atomic.Int64
	w := NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(_ context.Context, m *Message) error {
		if m.Offset == 1 {
			return errors.New("inventory service unavailable")
		}
		others.Add(1)
		return nil
	}, Speedup(2), WithRetry(RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Minute, MaxBackoff: time.Minute}))
	r := startWork(t, w)
	t.Cleanup(func() { require.NoError(t, r.stop(t)) })

	require.Eventually(t, func() bool {
		st := w.Status()
		return others.Load() == 2 && len(st.Partitions) == 1 && st.Partitions[0].Oldest != nil &&
			st.Partitions[0].Oldest.WaitsFor == WaitRetry
	}, 30*time.Second, 20*time.Millisecond)
	before := time.Now()
	p := w.Status().Partitions[0]
	o := p.Oldest
	require.Equal(t, int64(1), o.Offset)
	require.Equal(t, "k", o.Key)
	require.Equal(t, 1, o.Failures)
	require.Equal(t, "inventory service unavailable", o.LastError)
	require.WithinDuration(t, o.Since.Add(time.Minute), o.Until, time.Millisecond)
	require.True(t, o.Until.After(before.Add(50*time.Second)), "due in about a minute: %s", o.Until)
	require.Contains(t, o.Detail, "its handler failed once; next run in")
	require.Equal(t, 2, p.Unfinished, "offset 1 and offset 3, parked behind it")
	require.Equal(t, int64(1), p.StoredOffset)
	require.Equal(t, FailureCounts{Retried: 1}, w.Status().Failures)
}

// TestStatusNotRunning: a Work that is not running reports its configuration only.
func TestStatusNotRunning(t *testing.T) {
	w := NewWorkFactory(NewClient(Config{BootstrapServers: []string{"127.0.0.1:1"}})).CreateWithFunc(
		ConsumerTopicConfig{ClientID: "c", GroupID: "g", Topic: "t"},
		func(context.Context, *Message) error { return nil }, DisableCircuitBreaker())
	st := w.Status()
	require.False(t, st.Running)
	require.Equal(t, "disabled", st.Breaker)
	require.Equal(t, "g", st.Group)
	require.Equal(t, int32(-1), st.Generation)
	require.Empty(t, st.Partitions)
	require.Equal(t, 10.0, st.StuckAfterSeconds)
	require.Equal(t, BrokerStatus{}, st.Broker, "no Run: the brokers' state is not known")
}

// TestStatusJSONShape pins the JSON field names machines read.
func TestStatusJSONShape(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	st := Status{
		TakenAt: at, Topics: []string{"orders"}, Group: "g", MemberID: "m", Generation: 3, GroupProtocol: "classic",
		RebalanceProtocol: "EAGER", Running: true,
		Breaker: "closed", InFlight: InFlightStatus{Messages: 1, Bytes: 2, MaxMessages: 3, MaxBytes: 4},
		VirtualPartitions: 8, StuckAfterSeconds: 10,
		Partitions: []PartitionStatus{{
			Topic: "orders", Partition: 0, CommittedOffset: 2, StoredOffset: 2, EndOffset: 5, Lag: 3, Unfinished: 1,
			AssignedAt: at, StandingSeconds: 12, Stuck: true, StuckReason: "position has not moved for 12s",
			Oldest: &OldestUnfinished{Offset: 2, Key: "k", VirtualPartition: 1, WaitsFor: WaitHandler,
				Detail: "in the handler for 12s", ReadAt: at, Since: at, AgeSeconds: 12, WaitingSeconds: 12},
		}},
	}
	b, err := json.Marshal(st)
	require.NoError(t, err)
	require.JSONEq(t, `{
		"taken_at": "2025-01-02T03:04:05Z", "topics": ["orders"], "group": "g", "member_id": "m",
		"generation": 3, "group_protocol": "classic", "rebalance_protocol": "EAGER", "running": true, "stopping": false, "breaker": "closed", "paused": false,
		"fenced": false,
		"in_flight": {"messages": 1, "bytes": 2, "max_messages": 3, "max_bytes": 4},
		"virtual_partitions": 8, "stuck_after_seconds": 10,
		"partitions": [{
			"topic": "orders", "partition": 0, "committed_offset": 2, "stored_offset": 2,
			"end_offset": 5, "lag": 3, "unfinished": 1, "paused": false,
			"assigned_at": "2025-01-02T03:04:05Z", "standing_seconds": 12, "stuck": true,
			"stuck_reason": "position has not moved for 12s",
			"oldest_unfinished": {"offset": 2, "key": "k", "virtual_partition": 1, "waits_for": "handler",
				"detail": "in the handler for 12s", "read_at": "2025-01-02T03:04:05Z",
				"since": "2025-01-02T03:04:05Z", "age_seconds": 12, "waiting_seconds": 12}
		}],
		"broker": {"known": false, "reachable": false},
		"failures": {"retried": 0, "permanent": 0, "dead_lettered": 0, "skipped": 0, "poison_pills": 0},
		"commits": {"commits": 0, "already_finished": 0, "truncated": 0, "ignored": 0},
		"abandoned_handlers": 0
	}`, string(b))
}

// TestGroupMembershipParsesConfluentMetadata: the member id and generation come out of
// confluent's serialised group metadata (TestStatusStuckKey reads a live one); anything
// else gives "", -1 and not ok.
func TestGroupMembershipParsesConfluentMetadata(t *testing.T) {
	md, err := kafka.NewTestConsumerGroupMetadata("g")
	require.NoError(t, err)
	member, generation, ok := groupMembership(md)
	require.Equal(t, "", member)
	require.Equal(t, int32(-1), generation)
	require.True(t, ok, "a consumer outside its group")
	member, generation, ok = groupMembership(nil)
	require.Equal(t, "", member)
	require.Equal(t, int32(-1), generation)
	require.False(t, ok)
	member, generation, ok = groupMembership(&kafka.ConsumerGroupMetadata{}) // a layout it does not know
	require.Equal(t, "", member)
	require.Equal(t, int32(-1), generation)
	require.False(t, ok)
}

// startStatusWork runs a Work on a new one-partition topic holding recs, with cfg's topic,
// group and client id filled in; the Work stops at the end of the test.
func startStatusWork(t *testing.T, e *testEnv, recs []rec, cfg ConsumerTopicConfig, h func(context.Context, *Message) error, opts ...WorkOption) (*Work, string) {
	t.Helper()
	topic := e.newTopic(t, 1)
	e.produce(t, topic, recs)
	cfg.ClientID, cfg.GroupID, cfg.Topic = uniqueTestName(t, "c"), uniqueTestName(t, "g"), topic
	w := NewWorkFactory(e.client(t)).CreateWithFunc(cfg, h, opts...)
	r := startWork(t, w)
	t.Cleanup(func() { require.NoError(t, r.stop(t)) })
	return w, topic
}

// oldestWaiting waits until w's one partition's oldest unfinished message waits for want
// (and ok accepts the partition), and returns that partition.
func oldestWaiting(t *testing.T, w *Work, want WaitReason, ok func(PartitionStatus) bool) PartitionStatus {
	t.Helper()
	var last Status
	require.Eventually(t, func() bool {
		last = w.Status()
		return len(last.Partitions) == 1 && last.Partitions[0].Oldest != nil &&
			last.Partitions[0].Oldest.WaitsFor == want && ok(last.Partitions[0])
	}, 30*time.Second, 20*time.Millisecond, "last status: %+v", &last)
	return last.Partitions[0]
}

// TestStatusDeadLetterWriteFailing: a failed message whose dead letter the broker refuses
// holds the partition; Status says it waits for its dead letter, how often the write failed
// and why, and calls the partition stuck. When the topic takes the write, it finishes.
func TestStatusDeadLetterWriteFailing(t *testing.T) {
	e := newEmbeddedEnv(t)
	dlt := e.newTopic(t, 1)
	fault := dltProduceFault(e, dlt, kerr.TopicAuthorizationFailed)
	w, _ := startStatusWork(t, e, []rec{{Key: []byte("a")}, {Key: []byte("bad")}},
		ConsumerTopicConfig{DeadLetterTopicConfig: &ProducerTopicConfig{Topic: dlt}},
		func(_ context.Context, m *Message) error {
			if m.Key == "bad" {
				return errors.New("no such customer")
			}
			return nil
		}, Speedup(2), StuckAfter(300*time.Millisecond))
	p := oldestWaiting(t, w, WaitDeadLetter, func(p PartitionStatus) bool { return p.Stuck && p.Oldest.Failures >= 2 })
	o := p.Oldest
	require.Equal(t, int64(1), o.Offset)
	require.Equal(t, "bad", o.Key)
	require.Contains(t, o.Detail, "writing its dead letter to "+dlt+" for ")
	require.Contains(t, o.Detail, "next attempt in")
	require.Contains(t, o.LastError, "Topic authorization failed")
	require.Equal(t, int64(1), p.StoredOffset, "the offset waits at the unwritten dead letter")
	require.Contains(t, p.StuckReason, "position has not moved for")

	fault.Remove()
	require.Eventually(t, func() bool {
		st := w.Status()
		return len(st.Partitions) == 1 && st.Partitions[0].Oldest == nil && st.Partitions[0].StoredOffset == 2
	}, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, int64(1), w.Status().Failures.DeadLettered)
}

// TestStatusCircuitBreakerOpen: after a failure opens the breaker, the next message waits
// for it; Status says so, with the breaker open since when, and the partition is stuck for
// that reason.
func TestStatusCircuitBreakerOpen(t *testing.T) {
	e := newEmbeddedEnv(t)
	var runs atomic.Int64
	w, _ := startStatusWork(t, e, []rec{{Key: []byte("a")}, {Key: []byte("b")}}, ConsumerTopicConfig{},
		func(context.Context, *Message) error { runs.Add(1); return errors.New("database down") },
		Speedup(1), CircuitBreakAfter(1), CircuitBreakFor(time.Minute))
	p := oldestWaiting(t, w, WaitBreaker, func(p PartitionStatus) bool { return p.Stuck })
	st := w.Status()
	require.Equal(t, "open", st.Breaker)
	require.Equal(t, breakerStuckReason, p.StuckReason)
	o := p.Oldest
	require.Equal(t, int64(1), o.Offset)
	require.Equal(t, "b", o.Key)
	require.Equal(t, "the circuit breaker is open", o.Detail)
	require.False(t, o.Since.Before(o.ReadAt), "it waits since the later of its read and the opening")
	require.EqualValues(t, 1, runs.Load(), "no handler starts while the breaker is open")
}

// TestStatusProcessDelay: a message held by ProcessDelayMillis waits for the delay, until
// its timestamp + the delay, and does not make the partition stuck however long it stands.
func TestStatusProcessDelay(t *testing.T) {
	e := newEmbeddedEnv(t)
	w, _ := startStatusWork(t, e, []rec{{Key: []byte("a")}}, ConsumerTopicConfig{ProcessDelayMillis: intp(60_000)},
		func(context.Context, *Message) error { return nil }, StuckAfter(100*time.Millisecond))
	p := oldestWaiting(t, w, WaitDelay, func(p PartitionStatus) bool { return p.StandingSeconds >= 0.3 })
	require.False(t, p.Stuck, "a delay is not a stuck position: %+v", p)
	o := p.Oldest
	require.Equal(t, int64(0), o.Offset)
	require.WithinDuration(t, o.ReadAt.Add(time.Minute), o.Until, 5*time.Second, "due at its timestamp + 60 s")
	require.Contains(t, o.Detail, "held by ProcessDelayMillis for another ")
}
