package zkafka

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/zkafka-go/zkafka/internal/commit"
)

// testG16RebalanceOnly runs two Works on 6 partitions: B joins while A works (a revoke drops
// A's queued messages, leaving finished ones above them), then A stops gracefully while it
// still has work queued and running (under cooperative-sticky the partitions A had go to B
// only after A's Run returned). Every message is processed exactly once: the finished
// messages above each hole travel in the commit metadata, and a graceful stop commits all it
// finished (G16).
func testG16RebalanceOnly(t *testing.T, protocol string) {
	e := newEnv(t)
	topic := e.newTopic(t, 6)
	const n = 12000
	e.produce(t, topic, keyed(n, 600))
	group := uniqueTestName(t, "g")
	ko := newKeyOrder()
	var slow atomic.Bool // holds work in flight while B joins
	var byB atomic.Int64
	var whoMu sync.Mutex
	who := map[string]string{} // who processed each message, and when: printed for the duplicates
	defer func() {
		if t.Failed() {
			for k, v := range who {
				if strings.Count(v, "@") > 1 {
					t.Log(k, v)
				}
			}
		}
	}()
	wf := NewWorkFactory(e.client(t))
	mk := func(id string, count *atomic.Int64) *Work {
		cfg := underProtocol(ConsumerTopicConfig{ClientID: uniqueTestName(t, id), GroupID: group, Topic: topic,
			SessionTimeoutMillis: intp(6000), MaxPollIntervalMillis: intp(20000)}, protocol)
		return wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
			whoMu.Lock()
			who[fmt.Sprintf("%d/%d", m.Partition, m.Offset)] += fmt.Sprintf(" %s@%s", id, time.Now().Format("05.000"))
			whoMu.Unlock()
			ko.begin(m)
			if slow.Load() {
				time.Sleep(10 * time.Millisecond)
			} else {
				time.Sleep(50 * time.Microsecond)
			}
			ko.end(m)
			if count != nil {
				count.Add(1)
			}
			return nil
		}, Speedup(8), MaxInFlight(1000))
	}
	a := mk("a", nil)
	ra := startWork(t, a)
	require.Eventually(t, func() bool { return ko.count.Load() >= n/6 }, 60*time.Second, time.Millisecond)
	slow.Store(true)
	b := mk("b", &byB)
	rb := startWork(t, b)
	require.Eventually(t, func() bool { return byB.Load() >= 100 }, 60*time.Second, time.Millisecond, "B gets partitions")
	slow.Store(false)
	require.Eventually(t, func() bool { return ko.count.Load() >= n/2 }, 60*time.Second, time.Millisecond)
	slow.Store(true) // A stops with work in flight
	require.NoError(t, ra.stop(t))
	slow.Store(false)
	require.Eventually(t, func() bool { return ko.count.Load() == n }, 120*time.Second, 10*time.Millisecond)
	if protocol == protocolConsumer {
		st := b.Status()
		require.Equal(t, GroupProtocolConsumer, st.GroupProtocol)
		require.Equal(t, "COOPERATIVE", st.RebalanceProtocol)
		require.Positive(t, st.Generation, "the member epoch")
		// A may have finished its partitions before it left: B then has nothing of them to
		// process, and their assignment reaches it at its next heartbeat.
		require.Eventually(t, func() bool { return len(b.Status().Partitions) == 6 }, 30*time.Second, 10*time.Millisecond,
			"B owns every partition once A left")
	}
	require.NoError(t, rb.stop(t))

	ko.mu.Lock()
	defer ko.mu.Unlock()
	require.Empty(t, ko.errs)
	twice := 0
	for _, offs := range ko.seen {
		for _, calls := range offs {
			if calls != 1 {
				twice++
			}
		}
	}
	skipped := a.Status().Commits.AlreadyFinished + b.Status().Commits.AlreadyFinished
	t.Logf("%s: %d messages, %d processed more than once; skipped as finished before: %d; commits A %d, B %d",
		protocol, n, twice, skipped, a.Status().Commits.Commits, b.Status().Commits.Commits)
	require.Zero(t, twice, "no message is processed twice")
	require.Zero(t, ko.dupes.Load())
	require.Equal(t, e.endOffsets(t, topic), e.committed(t, group, topic))
}

func TestG16RebalanceOnlyEager(t *testing.T)       { testG16RebalanceOnly(t, protocolEager) }
func TestG16RebalanceOnlyCooperative(t *testing.T) { testG16RebalanceOnly(t, protocolCooperative) }

// TestG16RebalanceOnlyConsumerProtocol: the same join and graceful leave under Kafka 4's
// consumer group protocol (KIP-848), where the broker assigns partitions incrementally.
func TestG16RebalanceOnlyConsumerProtocol(t *testing.T) {
	testG16RebalanceOnly(t, protocolConsumer)
}

// TestG16GracefulStopCommitsWhatItFinished: a Work that stops gracefully while another member
// of its group reads commits everything it finished: the other member, which gets its
// partitions, processes none of them again, under each rebalance protocol. (Seen once under
// cooperative-sticky: a graceful stop under the incremental protocol that committed nothing it
// had finished, and thousands of messages processed twice by the member taking over.)
func TestG16GracefulStopCommitsWhatItFinished(t *testing.T) {
	eachProtocol(t, testG16GracefulStopCommits)
}

func testG16GracefulStopCommits(t *testing.T, protocol string) {
	e := newEnv(t)
	topic := e.newTopic(t, 6)
	const n = 6000
	e.produce(t, topic, keyed(n, 300))
	group := uniqueTestName(t, "g")
	ko := newKeyOrder()
	var byA, byB atomic.Int64
	var slowB atomic.Bool
	slowB.Store(true)
	wf := NewWorkFactory(e.client(t))
	mk := func(id string, count *atomic.Int64, slow *atomic.Bool) *Work {
		cfg := underProtocol(ConsumerTopicConfig{ClientID: uniqueTestName(t, id), GroupID: group, Topic: topic,
			SessionTimeoutMillis: intp(6000), MaxPollIntervalMillis: intp(20000)}, protocol)
		return wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
			ko.begin(m)
			if slow != nil && slow.Load() {
				time.Sleep(5 * time.Millisecond)
				if byA.Load() == 0 {
					// Until A works, B must not drain the topic (160 messages a second):
					// a slow join under load gave B everything and A nothing.
					time.Sleep(45 * time.Millisecond)
				}
			}
			ko.end(m)
			count.Add(1)
			return nil
		}, Speedup(8))
	}
	// B first, slow, so that it holds its partitions; A joins and works the rest.
	rb := startWork(t, mk("b", &byB, &slowB))
	require.Eventually(t, func() bool { return byB.Load() >= 10 }, 60*time.Second, time.Millisecond)
	ra := startWork(t, mk("a", &byA, nil))
	require.Eventually(t, func() bool { return byA.Load() >= 500 }, 60*time.Second, time.Millisecond, "A gets partitions")
	require.NoError(t, ra.stop(t))
	finishedByA := byA.Load()
	slowB.Store(false)
	require.Eventually(t, func() bool { return ko.count.Load() == n }, 120*time.Second, 10*time.Millisecond)
	require.NoError(t, rb.stop(t))
	t.Logf("%s: A finished %d before its graceful stop; B processed %d; %d processed twice", protocol, finishedByA, byB.Load(), ko.dupes.Load())
	require.Zero(t, ko.dupes.Load(), "B processes nothing A finished")
	require.Equal(t, e.endOffsets(t, topic), e.committed(t, group, topic))
}

// TestG16RestartAfterCancelRedoesOnlyWhatWasInFlight: a Work cancelled abruptly while one or
// two of its handlers are blocked (and messages of their virtual partitions wait behind them) and
// others have finished, holes and all, is restarted: the new run processes exactly the
// messages that were not finished at the cancel, each once.
func TestG16RestartAfterCancelRedoesOnlyWhatWasInFlight(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 4)
	const n = 4000
	e.produce(t, topic, keyed(n, 400))
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	wf := NewWorkFactory(e.client(t))

	var mu sync.Mutex
	finished := map[tpKey]map[int64]bool{} // by OnDone: what the first run finished
	var blocked atomic.Int32
	onDone := func(_ context.Context, m *Message, err error) {
		if err == nil {
			mu.Lock()
			tp := tpKey{m.Topic, m.Partition}
			if finished[tp] == nil {
				finished[tp] = map[int64]bool{}
			}
			finished[tp][m.Offset] = true
			mu.Unlock()
		}
	}
	var done atomic.Int64
	first := wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		if v := string(m.value); (v == "1500" || v == "2600") && blocked.Add(1) > 0 {
			<-ctx.Done() // in flight at the cancel
			return ctx.Err()
		}
		done.Add(1)
		return nil
	}, Speedup(8), WithOnDone(onDone))
	r := startWork(t, first)
	// Both blocked handlers start only when their keys are on different virtual partitions:
	// the router may queue the second behind the first (local CI on Apache Kafka, once).
	require.Eventually(t, func() bool { return blocked.Load() >= 1 && done.Load() >= n/2 }, 60*time.Second, time.Millisecond)
	r.cancel()
	<-r.done
	require.NoError(t, r.err)

	mu.Lock()
	var finishedCount int
	for _, offs := range finished {
		finishedCount += len(offs)
	}
	mu.Unlock()
	require.Less(t, finishedCount, n, "something was in flight")
	ko := newKeyOrder()
	second := wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		ko.begin(m)
		ko.end(m)
		return nil
	}, Speedup(8))
	r2 := startWork(t, second)
	require.Eventually(t, func() bool { return int(ko.count.Load()) == n-finishedCount }, 60*time.Second, time.Millisecond)
	require.NoError(t, r2.stop(t))
	require.Equal(t, e.endOffsets(t, topic), e.committed(t, group, topic))

	ko.mu.Lock()
	defer ko.mu.Unlock()
	require.Empty(t, ko.errs)
	require.Zero(t, ko.dupes.Load(), "each unfinished message once")
	for tp, offs := range ko.seen {
		for off := range offs {
			require.False(t, finished[tp][off], "%v offset %d was finished before the cancel and ran again", tp, off)
		}
	}
	t.Logf("finished before the cancel: %d; run again: %d; skipped as finished: %d",
		finishedCount, ko.count.Load(), second.Status().Commits.AlreadyFinished)
}

// TestG16RevokeCommitsWhatFinishedBeforeItWaits: a revoke that waits for a handler past
// revokeEarlyCommit commits what finished first (offset 0 is in the handler, 1–4 are done),
// so a wait that outlasts the member's place in the group does not lose it.
func TestG16RevokeCommitsWhatFinishedBeforeItWaits(t *testing.T) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 1)
	group := uniqueTestName(t, "g")
	cfg := underProtocol(ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic,
		AutoCommitIntervalMs: intp(600_000)}, // no periodic commit
		protocolEager) // a joining member takes the one partition: the sticky assignors would leave it
	release, finished := make(chan struct{}), make(chan int64, 8)
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	wf := NewWorkFactory(e.client(t))
	a := wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		if m.Offset == 0 {
			<-release
		}
		finished <- m.Offset
		return nil
	}, Speedup(8)) // five keys: five virtual partitions
	e.produce(t, topic, keyed(5, 5))
	ra := startWork(t, a)
	for range 4 {
		select {
		case off := <-finished:
			require.NotZero(t, off)
		case <-ra.done:
			t.Fatalf("A's Run returned: %v", ra.err)
		}
	}
	runs := func() []uint64 {
		gc, ok := e.cluster.GroupInfo(group).Commits[topic][0]
		if !ok {
			return nil
		}
		c, err := commit.Decode(gc.Metadata)
		require.NoError(t, err)
		require.False(t, c.Released, "the revoke has not let the partition go yet")
		return c.Runs
	}
	require.NotEqual(t, []uint64{1, 4}, runs(), "the first commits (poison.go's window) came before 1–4 finished")

	cfgB := cfg
	cfgB.ClientID = uniqueTestName(t, "b")
	// B joins: A's revoke waits for offset 0. letGo runs before the Runs are cancelled.
	startWork(t, wf.CreateWithFunc(cfgB, func(context.Context, *Message) error { return nil }))
	t.Cleanup(letGo)
	require.Eventually(t, func() bool { return slices.Equal(runs(), []uint64{1, 4}) }, 20*time.Second, 10*time.Millisecond,
		"a commit says offset 0 is unfinished and 1–4 are finished: %v", runs())
	select {
	case off := <-finished:
		t.Fatalf("offset %d finished: the commit came after the wait, not before", off)
	default:
	}
	letGo()
	require.Zero(t, <-finished)
}

// TestG16CooperativeRevokeCommitsThePartitionsItKeeps: an incremental revoke commits what
// finished in the partitions the member keeps, before it returns. Once it returns, librdkafka
// rejoins, and a commit made after it waits behind that JoinGroup until the group has
// rebalanced: here the rejoin is held, and both partitions must already be committed in full.
func TestG16CooperativeRevokeCommitsThePartitionsItKeeps(t *testing.T) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 2)
	group := uniqueTestName(t, "g")
	cfg := underProtocol(ConsumerTopicConfig{ClientID: uniqueTestName(t, "a"), GroupID: group, Topic: topic,
		AutoCommitIntervalMs: intp(600_000)}, // no periodic commit
		protocolCooperative)
	const each = 3
	var recs []rec
	for p := range int32(2) {
		for i := range each {
			recs = append(recs, rec{Key: []byte(fmt.Sprintf("p%d-k%d", p, i)), Value: []byte("v"), Partition: p})
		}
	}
	finished := make(chan struct{}, 2*each)
	wf := NewWorkFactory(e.client(t))
	a := wf.CreateWithFunc(cfg, func(context.Context, *Message) error {
		finished <- struct{}{}
		return nil
	})
	ra := startWork(t, a)
	gi, err := e.cluster.WaitGroupStable(t.Context(), group, 1)
	require.NoError(t, err)
	memberA := gi.Members[0].MemberID
	e.produce(t, topic, recs)
	for range 2 * each {
		select {
		case <-finished:
		case <-ra.done:
			t.Fatalf("A's Run returned: %v", ra.err)
		case <-time.After(30 * time.Second):
			t.Fatal("A did not finish the records")
		}
	}
	committed := func() map[int32]int64 {
		out := map[int32]int64{}
		for p, c := range e.cluster.GroupInfo(group).Commits[topic] {
			out[p] = c.Offset
		}
		return out
	}
	require.NotEqual(t, map[int32]int64{0: each, 1: each}, committed(), "nothing commits what finished before the rebalance")

	// Hold A's second JoinGroup from here on: the rejoin after its incremental revoke.
	held, release := make(chan struct{}), make(chan struct{})
	var joins atomic.Int32
	e.cluster.ControlKey(kmsg.JoinGroup.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		if req.(*kmsg.JoinGroupRequest).MemberID != memberA || joins.Add(1) != 2 {
			return nil, nil, false
		}
		close(held)
		e.cluster.SleepControl(func() { <-release })
		return nil, nil, false
	})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	cfgB := cfg
	cfgB.ClientID = uniqueTestName(t, "b")
	startWork(t, wf.CreateWithFunc(cfgB, func(context.Context, *Message) error { return nil }))
	select {
	case <-held:
	case <-time.After(60 * time.Second):
		t.Fatal("A did not rejoin after its revoke")
	}
	require.Equal(t, map[int32]int64{0: each, 1: each}, committed(),
		"while A's rejoin is held, both partitions are committed: the revoked one and the one A keeps")
	releaseOnce.Do(func() { close(release) })
}

// revokeWait is a cooperative-sticky Work A, alone in its group on two partitions of four
// messages each, whose incremental revoke is waiting: B joined, and A's revoke waits for the
// first message of the partition it lets go (revoking), whose handler is held, as is the first
// message of the partition A keeps (kept) until open(kept).
type revokeWait struct {
	e              *testEnv
	group          string
	cfg            ConsumerTopicConfig
	logs           *captureLogger
	readerA        *KReader
	revoking, kept int32
	open           func(p int32)
	committed      func(p int32) int64
	each           int64
}

func startRevokeWait(t *testing.T) *revokeWait {
	t.Helper()
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 2)
	group := uniqueTestName(t, "g")
	logs := newCaptureLogger()
	clientA := NewClient(Config{BootstrapServers: []string{e.addr}}, LoggerOption(logs))
	t.Cleanup(func() { _ = clientA.Close() })
	cfg := underProtocol(ConsumerTopicConfig{ClientID: uniqueTestName(t, "a"), GroupID: group, Topic: topic,
		AutoCommitIntervalMs: intp(100)}, protocolCooperative)
	gates := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	var gateOnce [2]sync.Once
	open := func(p int32) { gateOnce[p].Do(func() { close(gates[p]) }) }
	t.Cleanup(func() { open(0); open(1) })
	started := make(chan int32, 2)
	a := NewWorkFactory(clientA).CreateWithFunc(cfg, func(_ context.Context, m *Message) error {
		if m.Offset == 0 {
			started <- m.Partition
			<-gates[m.Partition]
		}
		return nil
	}, Speedup(8))
	ra := startWork(t, a)
	rd, err := clientA.Reader(t.Context(), cfg)
	require.NoError(t, err)
	w := &revokeWait{e: e, group: group, cfg: cfg, logs: logs, readerA: rd.(*KReader), open: open,
		each: 4}
	w.committed = func(p int32) int64 { return e.cluster.GroupInfo(group).Commits[topic][p].Offset }
	var recs []rec
	for p := range int32(2) {
		for i := range w.each {
			recs = append(recs, rec{Key: []byte(fmt.Sprintf("p%d-k%d", p, i)), Value: []byte("v"), Partition: p})
		}
	}
	e.produce(t, topic, recs)
	for range 2 {
		select {
		case <-started:
		case <-ra.done:
			t.Fatalf("A's Run returned: %v", ra.err)
		case <-time.After(30 * time.Second):
			t.Fatal("A did not start the first message of each partition")
		}
	}
	require.Eventually(t, func() bool { return w.committed(0) == 0 && w.committed(1) == 0 }, 10*time.Second, 10*time.Millisecond,
		"the first message of each partition holds its commit")

	cfgB := cfg
	cfgB.ClientID = uniqueTestName(t, "b")
	startWork(t, NewWorkFactory(e.client(t)).CreateWithFunc(cfgB, func(context.Context, *Message) error { return nil }))
	w.revoking = -1
	require.Eventually(t, func() bool {
		for _, p := range w.readerA.tracker.Partitions(nil) {
			if _, partition := p.TopicPartition(); p.Revoking() {
				w.revoking = partition
				return true
			}
		}
		return false
	}, 60*time.Second, time.Millisecond, "A's revoke did not begin")
	w.kept = 1 - w.revoking
	return w
}

// TestG16CooperativeRevokeCommitsWhileItWaits: while an incremental revoke waits for a handler
// of the partition it takes, the periodic commit goes on, and what finishes meanwhile in the
// partition the member keeps is committed before the wait ends.
func TestG16CooperativeRevokeCommitsWhileItWaits(t *testing.T) {
	w := startRevokeWait(t)
	w.open(w.kept)
	require.Eventually(t, func() bool { return w.committed(w.kept) == w.each }, 10*time.Second, 5*time.Millisecond,
		"the kept partition is committed while the revoke waits")
	require.Empty(t, w.logs.containing("zkafka: partitions revoked"), "the revoke was still waiting")
	w.open(w.revoking)
}

// TestG16NoCommitWhileTheGroupRefusesTheGeneration: the group refuses a member's generation (a heartbeat answered
// ILLEGAL_GENERATION) while its incremental revoke waits; librdkafka then holds generation -1
// until it rejoins, and a commit sent meanwhile would be one outside the group, which a broker
// takes when the group is empty at that moment, over what the partitions' next owner committed.
// What finishes meanwhile is not committed until the member rejoined: no commit request with
// generation -1 reaches the broker, the commit held says why in one line, and the work is
// committed once the member is back in the group.
func TestG16NoCommitWhileTheGroupRefusesTheGeneration(t *testing.T) {
	w := startRevokeWait(t)
	id, _, known := classicMembership(w.readerA.consumer, w.cfg)
	require.True(t, known)
	require.NotEmpty(t, id)
	outside := w.e.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: w.group, Observe: true, Count: -1,
		When: func(r kmsg.Request) bool { return r.(*kmsg.OffsetCommitRequest).Generation < 0 }})
	t.Cleanup(outside.Remove)
	refused := w.e.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Group: w.group, Err: kerr.IllegalGeneration,
		TopLevel: true, When: func(r kmsg.Request) bool { return r.(*kmsg.HeartbeatRequest).MemberID == id }})
	t.Cleanup(refused.Remove)
	require.Eventually(t, func() bool {
		_, generation, _ := classicMembership(w.readerA.consumer, w.cfg)
		return generation == -1
	}, 30*time.Second, 5*time.Millisecond, "librdkafka did not take the refused generation")

	w.open(w.kept) // its messages finish, and a commit is due within 100 ms
	const held = "not a member of its group"
	var lines []string
	require.Eventually(t, func() bool {
		lines = append(lines, w.logs.containing(held)...)
		return outside.Hits() > 0 || len(lines) > 0
	}, 10*time.Second, 5*time.Millisecond, "no commit was tried")
	require.Zero(t, outside.Hits(), "a commit with generation -1 reached the broker")
	require.Len(t, append(lines, w.logs.containing(held)...), 1, "the held commit is one line")
	require.Equal(t, int64(0), w.committed(w.kept), "nothing committed outside the group")

	w.open(w.revoking)
	require.Eventually(t, func() bool {
		return w.committed(0) == w.each && w.committed(1) == w.each
	}, 60*time.Second, 10*time.Millisecond, "the work is committed once A is back in the group (or by B)")
	require.Zero(t, outside.Hits(), "a commit with generation -1 reached the broker")
}
