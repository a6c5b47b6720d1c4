package zkafka

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// running is a Work started by startWork.
type running struct {
	shutdown chan struct{}
	cancel   context.CancelFunc
	done     chan struct{} // closed when Run returned
	err      error         // what Run returned, once done is closed
}

// startWork starts w.Run in a goroutine; the test's cleanup cancels it and waits.
func startWork(t testing.TB, w *Work) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{shutdown: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = w.Run(ctx, r.shutdown)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30 s of the cancel")
		}
	})
	return r
}

// stop closes shutdown (the graceful stop) and returns what Run returned.
func (r *running) stop(t testing.TB) error {
	t.Helper()
	close(r.shutdown)
	select {
	case <-r.done:
		return r.err
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after shutdown")
		return nil
	}
}

// keyOrder checks G2 while a worker runs: per key, offsets only grow and no two messages of a
// key are processed at once.
type keyOrder struct {
	mu     sync.Mutex
	last   map[string]int64
	active map[string]bool
	seen   map[tpKey]map[int64]int
	count  atomic.Int64
	dupes  atomic.Int64
	errs   []string
}

func newKeyOrder() *keyOrder {
	return &keyOrder{last: map[string]int64{}, active: map[string]bool{}, seen: map[tpKey]map[int64]int{}}
}

func (k *keyOrder) begin(m *Message) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := fmt.Sprintf("%s/%d/%s", m.Topic, m.Partition, m.Key)
	if k.active[key] {
		k.errs = append(k.errs, fmt.Sprintf("two messages of key %s at once (offset %d)", key, m.Offset))
	}
	k.active[key] = true
	if prev, ok := k.last[key]; ok && prev >= m.Offset {
		k.errs = append(k.errs, fmt.Sprintf("key %s: offset %d after %d", key, m.Offset, prev))
	}
	k.last[key] = m.Offset
	tp := tpKey{m.Topic, m.Partition}
	if k.seen[tp] == nil {
		k.seen[tp] = map[int64]int{}
	}
	k.seen[tp][m.Offset]++
	if k.seen[tp][m.Offset] > 1 {
		k.dupes.Add(1)
	} else {
		k.count.Add(1)
	}
}

func (k *keyOrder) end(m *Message) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.active, fmt.Sprintf("%s/%d/%s", m.Topic, m.Partition, m.Key))
}

func (k *keyOrder) check(t testing.TB) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	require.Empty(t, k.errs)
}

func TestG1G2EveryMessageOnceInKeyOrderAtSpeedup64(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 6)
	const n, keys = 20000, 500
	e.produce(t, topic, keyed(n, keys))
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	ko := newKeyOrder()
	wf := NewWorkFactory(e.client(t))
	w := wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		ko.begin(m)
		runtime.Gosched()
		ko.end(m)
		return nil
	}, Speedup(64))
	r := startWork(t, w)
	require.Eventually(t, func() bool { return ko.count.Load() == n }, 120*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop(t))
	ko.check(t)
	require.Zero(t, ko.dupes.Load(), "nothing is processed twice in one uninterrupted run")
	require.Equal(t, e.endOffsets(t, topic), e.committed(t, group, topic), "graceful shutdown commits everything processed (G3)")

	// A restarted worker of the same group processes nothing old: only a new sentinel.
	e.produce(t, topic, []rec{{Key: []byte("sentinel"), Value: []byte("new"), Partition: 0}})
	var got []string
	var mu sync.Mutex
	w2 := wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m.Key)
		return nil
	}, Speedup(64))
	r2 := startWork(t, w2)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 }, 60*time.Second, 10*time.Millisecond)
	require.NoError(t, r2.stop(t))
	require.Equal(t, []string{"sentinel"}, got)
}

func TestG4CancelReturnsPromptlyAndRedelivers(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	dlt := e.newTopic(t, 1)
	e.produce(t, topic, []rec{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("a"), Value: []byte("2")}})
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic,
		DeadLetterTopicConfig: &ProducerTopicConfig{Topic: dlt}}
	wf := NewWorkFactory(e.client(t))
	started := make(chan int64, 1)
	w := wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		started <- m.Offset
		<-ctx.Done()
		return ctx.Err()
	})
	r := startWork(t, w)
	first := <-started
	require.Equal(t, int64(0), first)
	t0 := time.Now()
	r.cancel()
	select {
	case <-r.done:
		require.NoError(t, r.err, "an abrupt stop is not an error")
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2 s of the cancel")
	}
	require.Less(t, time.Since(t0), 2*time.Second)
	requireNothingCommittedPast(t, e.committed(t, group, topic), 0, "nothing finished, nothing committed past it")

	// The next worker of the group gets the message again.
	var offsets []int64
	var mu sync.Mutex
	w2 := wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		mu.Lock()
		defer mu.Unlock()
		offsets = append(offsets, m.Offset)
		return nil
	})
	r2 := startWork(t, w2)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(offsets) == 2 }, 60*time.Second, 10*time.Millisecond)
	require.NoError(t, r2.stop(t))
	require.Equal(t, []int64{0, 1}, offsets)
	require.Equal(t, map[int32]int64{0: 2}, e.committed(t, group, topic))
	require.Equal(t, map[int32]int64{0: 0}, e.endOffsets(t, dlt), "a cancel dead-letters nothing")
}

func testG6Rebalance(t *testing.T, protocol string) {
	e := newEnv(t)
	topic := e.newTopic(t, 8)
	const n = 20000
	e.produce(t, topic, keyed(n, 1000))
	group := uniqueTestName(t, "g")
	ko := newKeyOrder()
	wf := NewWorkFactory(e.client(t))
	mk := func(id string) *Work {
		cfg := underProtocol(ConsumerTopicConfig{ClientID: uniqueTestName(t, id), GroupID: group, Topic: topic,
			SessionTimeoutMillis: intp(6000), MaxPollIntervalMillis: intp(10000)}, protocol)
		return wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
			ko.begin(m)
			time.Sleep(50 * time.Microsecond)
			ko.end(m)
			return nil
		}, Speedup(8), MaxInFlight(500))
	}
	r1 := startWork(t, mk("w1"))
	require.Eventually(t, func() bool { return ko.count.Load() >= n/5 }, 60*time.Second, time.Millisecond)
	r2 := startWork(t, mk("w2"))
	require.Eventually(t, func() bool { return ko.count.Load() >= n/2 }, 60*time.Second, time.Millisecond)
	require.NoError(t, r1.stop(t))
	require.Eventually(t, func() bool { return ko.count.Load() == n }, 120*time.Second, 10*time.Millisecond)
	require.NoError(t, r2.stop(t))
	dupes := ko.dupes.Load()
	t.Logf("%s: %d messages, %d duplicates (%.3f%%)", protocol, n, dupes, 100*float64(dupes)/n)
	require.Less(t, dupes, int64(n/100), "duplicates stay under 1%%")
	require.Equal(t, e.endOffsets(t, topic), e.committed(t, group, topic))
}

func TestG6RebalanceEager(t *testing.T)            { testG6Rebalance(t, protocolEager) }
func TestG6RebalanceCooperative(t *testing.T)      { testG6Rebalance(t, protocolCooperative) }
func TestG6RebalanceConsumerProtocol(t *testing.T) { testG6Rebalance(t, protocolConsumer) }

func TestG7SlowHandlerKeepsGroupMembership(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, []rec{{Key: []byte("k"), Value: []byte("1")}, {Key: []byte("k"), Value: []byte("2")}, {Key: []byte("k"), Value: []byte("3")}})
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic,
		SessionTimeoutMillis: intp(2000), MaxPollIntervalMillis: intp(2000)}
	var mu sync.Mutex
	var offsets []int64
	wf := NewWorkFactory(e.client(t))
	w := wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		time.Sleep(5 * time.Second)
		mu.Lock()
		offsets = append(offsets, m.Offset)
		mu.Unlock()
		return nil
	}, MaxInFlight(1))
	r := startWork(t, w)
	var epoch int32 = -1
	if e.embedded() {
		gi, err := e.cluster.WaitGroupStable(context.Background(), group, 1)
		require.NoError(t, err)
		epoch = gi.Epoch
	}
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(offsets) == 3 }, 60*time.Second, 10*time.Millisecond)
	if e.embedded() {
		gi := e.cluster.GroupInfo(group)
		require.Equal(t, epoch, gi.Epoch, "the group generation never changed")
		require.Len(t, gi.Members, 1)
	}
	require.NoError(t, r.stop(t))
	require.Equal(t, []int64{0, 1, 2}, offsets, "each message processed exactly once")
	require.Equal(t, map[int32]int64{0: 3}, e.committed(t, group, topic))
}

func TestG8MemoryStaysFlatBehindASlowHandler(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 4)
	group := uniqueTestName(t, "g")
	release := make(chan struct{})
	var dispatched atomic.Int64
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	wf := NewWorkFactory(e.client(t))
	w := wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}, Speedup(4), MaxInFlight(1000), WithLifecycleHooks(LifecycleHooks{PostRead: func(ctx context.Context, _ LifecyclePostReadMeta) (context.Context, error) {
		dispatched.Add(1) // PostRead runs as the reader dispatches a message
		return ctx, nil
	}}))
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	r := startWork(t, w)
	const batch = 20000
	e.produce(t, topic, keyed(batch, 1000))
	require.Eventually(t, func() bool { return dispatched.Load() >= 1000 }, 60*time.Second, time.Millisecond)
	before := heap()
	for i := 1; i < 10; i++ {
		e.produce(t, topic, keyed(batch, 1000))
	}
	after := heap()
	t.Logf("heap with 1,000 unfinished: %d KiB; after 180,000 more queued on the broker: %d KiB; dispatched %d", before>>10, after>>10, dispatched.Load())
	require.LessOrEqual(t, dispatched.Load(), int64(1001), "the reader holds at most the in-flight bound")
	require.Less(t, int64(after)-int64(before), int64(16<<20), "heap does not grow with lag")
	close(release)
	require.Eventually(t, func() bool { return dispatched.Load() == 10*batch }, 120*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop(t))
}

func TestG2HashRoutingSendsEachKeyToItsHashedVirtualPartition(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 3)
	const n = 3000
	e.produce(t, topic, keyed(n, 100))
	ko := newKeyOrder()
	var mu sync.Mutex
	var wrong []string
	wf := NewWorkFactory(e.client(t))
	w := wf.CreateWithFunc(ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: uniqueTestName(t, "g"), Topic: topic}, func(ctx context.Context, m *Message) error {
		ko.begin(m)
		ko.end(m)
		return nil
	}, Speedup(8), HashRouting(), WithLifecycleHooks(LifecycleHooks{
		PreProcessing: func(ctx context.Context, m LifecyclePreProcessingMeta) (context.Context, error) {
			if want := routeKey(m.Message.Key, 8); m.VirtualPartitionIndex != want {
				mu.Lock()
				wrong = append(wrong, fmt.Sprintf("%s on %d, want %d", m.Message.Key, m.VirtualPartitionIndex, want))
				mu.Unlock()
			}
			return ctx, nil
		},
	}))
	r := startWork(t, w)
	require.Eventually(t, func() bool { return ko.count.Load() == n }, 60*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop(t))
	ko.check(t)
	require.Empty(t, wrong)
}

func TestG4CancelCommitsWhatFinishedBeforeIt(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, []rec{{Key: []byte("a"), Value: []byte("0")}, {Key: []byte("b"), Value: []byte("1")}, {Key: []byte("c"), Value: []byte("2")}})
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	blocked := make(chan struct{})
	w := NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		if m.Offset == 2 {
			close(blocked)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	r := startWork(t, w)
	<-blocked // offsets 0 and 1 are finished
	r.cancel()
	select {
	case <-r.done:
		require.NoError(t, r.err)
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2 s of the cancel")
	}
	require.Equal(t, map[int32]int64{0: 2}, e.committed(t, group, topic),
		"the finished prefix is committed, the interrupted message is not")
}

// revokeLogger signals every "partitions revoked" line of a Work.
type revokeLogger struct {
	NoopLogger
	revoked chan struct{}
}

func (l revokeLogger) Infow(_ context.Context, msg string, _ ...any) {
	if msg == "zkafka: partitions revoked" {
		select {
		case l.revoked <- struct{}{}:
		default:
		}
	}
}

// TestG6MessagePoppedDuringARevokeIsLeftToTheNextOwner: a processor takes a message from its
// queue just as the message's partition is revoked, before it marks the message as running,
// so the revoke does not wait for it. The message must then be left to the partition's next
// owner, not processed as well by a consumer that no longer owns it.
func TestG6MessagePoppedDuringARevokeIsLeftToTheNextOwner(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, []rec{{Key: []byte("a"), Value: []byte("x")}})
	group := uniqueTestName(t, "g")

	popped, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	testHookPopped = func(*Message) { once.Do(func() { close(popped); <-release }) }
	t.Cleanup(func() { testHookPopped = nil })

	var processed atomic.Int64
	mk := func(l Logger) *Work {
		cfg := underProtocol(ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic,
			SessionTimeoutMillis: intp(6000), MaxPollIntervalMillis: intp(10000), AutoCommitIntervalMs: intp(100)},
			protocolEager) // a joining member takes the one partition: the sticky assignors would leave it
		c := NewClient(Config{BootstrapServers: []string{e.addr}}, LoggerOption(l)) // the reader logs revokes with the client's logger
		t.Cleanup(func() { _ = c.Close() })
		return NewWorkFactory(c).CreateWithFunc(cfg, func(context.Context, *Message) error {
			processed.Add(1)
			return nil
		})
	}
	first := revokeLogger{revoked: make(chan struct{}, 1)}
	r1 := startWork(t, mk(first))
	select {
	case <-popped:
	case <-time.After(60 * time.Second):
		t.Fatal("the first worker never took the message from its queue")
	}
	r2 := startWork(t, mk(NoopLogger{})) // joining makes the group take the partition from the first
	select {
	case <-first.revoked:
	case <-time.After(60 * time.Second):
		t.Fatal("the first worker's partition was never revoked")
	}
	close(release)

	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == 1 }, 60*time.Second, 20*time.Millisecond,
		"the partition's next owner processes and commits the message")
	require.NoError(t, r1.stop(t))
	require.NoError(t, r2.stop(t))
	require.Equal(t, int64(1), processed.Load(), "processed once, by the owner of its partition")
}

// TestG6RollingSwitchToTheConsumerProtocol: a group of classic members (cooperative-sticky) is
// moved to the consumer protocol member by member, as a rolling deploy does: a member under
// the consumer protocol joins while a classic one works, then the classic one leaves. Kafka 4
// converts the group; nothing is lost and nothing is processed twice.
func TestG6RollingSwitchToTheConsumerProtocol(t *testing.T) {
	e := newEnv(t)
	if e.embedded() {
		t.Skip("kfake refuses a consumer-protocol member while the group has classic members (GROUP_ID_NOT_FOUND); Apache Kafka 4 converts the group")
	}
	topic := e.newTopic(t, 6)
	const n = 12000
	recs := keyed(n, 600)
	e.produce(t, topic, recs[:n/2])
	group := uniqueTestName(t, "g")
	ko := newKeyOrder()
	var byNew atomic.Int64
	wf := NewWorkFactory(e.client(t))
	mk := func(id, protocol string, count *atomic.Int64) *Work {
		cfg := underProtocol(ConsumerTopicConfig{ClientID: uniqueTestName(t, id), GroupID: group, Topic: topic,
			SessionTimeoutMillis: intp(6000), MaxPollIntervalMillis: intp(10000)}, protocol)
		return wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
			ko.begin(m)
			time.Sleep(200 * time.Microsecond)
			ko.end(m)
			if count != nil {
				count.Add(1)
			}
			return nil
		}, Speedup(8), MaxInFlight(500))
	}
	rOld := startWork(t, mk("classic", protocolCooperative, nil))
	require.Eventually(t, func() bool { return ko.count.Load() >= n/5 }, 60*time.Second, time.Millisecond)
	newer := mk("consumer", protocolConsumer, &byNew)
	rNew := startWork(t, newer)
	require.Eventually(t, func() bool { return len(newer.Status().Partitions) > 0 }, 60*time.Second, 10*time.Millisecond,
		"the new member gets partitions")
	e.produce(t, topic, recs[n/2:])
	require.Eventually(t, func() bool { return byNew.Load() >= 100 }, 60*time.Second, time.Millisecond, "the new member works")
	require.NoError(t, rOld.stop(t))
	require.Eventually(t, func() bool { return ko.count.Load() == n }, 120*time.Second, 10*time.Millisecond)
	require.Equal(t, GroupProtocolConsumer, newer.Status().GroupProtocol)
	require.Len(t, newer.Status().Partitions, 6, "the new member owns every partition once the classic one left")
	require.NoError(t, rNew.stop(t))
	t.Logf("%d messages, %d by the new member, %d processed twice", n, byNew.Load(), ko.dupes.Load())
	require.Zero(t, ko.dupes.Load(), "nothing is processed twice")
	require.Equal(t, e.endOffsets(t, topic), e.committed(t, group, topic))
}
