package zkafka

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// coordinatorAway makes group's coordinator go away at the first OffsetCommit that commits
// offset from or later (commits of earlier offsets, such as the fence's probes, pass), which
// it answers with NOT_COORDINATOR: from then on FindCoordinator finds none and every request
// of the group is refused, until the returned func is called. refused is closed when that
// commit was answered. Going away at a chosen commit, not at the next one, keeps a probe sent
// while the test's message is on its way from raising the fence before that message runs
// (a CI run on a slow host waited for it for ever).
func coordinatorAway(c *kfake.Cluster, group string, from int64) (refused <-chan struct{}, back func()) {
	ch := make(chan struct{})
	var mu sync.Mutex
	var faults []*kfake.FaultHandle
	c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		oc := req.(*kmsg.OffsetCommitRequest)
		if oc.Group != group || !commitsFrom(oc, from) {
			return nil, nil, false // not handled: the cluster commits it, the control stays
		}
		mu.Lock()
		faults = append(faults,
			c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.FindCoordinator}, Group: group, Err: kerr.CoordinatorNotAvailable, Count: -1}),
			c.Fault(kfake.Fault{Group: group, Err: kerr.NotCoordinator, Count: -1}))
		mu.Unlock()
		resp := oc.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range oc.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotCoordinator.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		close(ch)
		return resp, nil, true
	})
	return ch, func() {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range faults {
			f.Remove()
		}
		faults = nil
	}
}

// commitsFrom reports whether oc commits offset from or later for any partition.
func commitsFrom(oc *kmsg.OffsetCommitRequest, from int64) bool {
	for _, rt := range oc.Topics {
		for _, rp := range rt.Partitions {
			if rp.Offset >= from {
				return true
			}
		}
	}
	return false
}

// nextOffset is the next offset a test's handler sent on done, failing the test when none
// came within a minute (a bare receive would hang the test until its watchdog).
func nextOffset(t *testing.T, done <-chan int64) int64 {
	t.Helper()
	select {
	case o := <-done:
		return o
	case <-time.After(time.Minute):
		t.Fatal("no handler started within a minute")
		return -1
	}
}

// TestG4CancelReturnsWhileTheCoordinatorIsAway: the group coordinator goes away while a
// periodic commit is on its way, so librdkafka holds that commit until a coordinator answers.
// A cancelled Run still returns (before closeMaxWait, it waited for the whole outage: the
// close waited for the commit), the consumer closes when the coordinator is back, and what
// was not committed is read again.
func TestG4CancelReturnsWhileTheCoordinatorIsAway(t *testing.T) {
	testStopWhileTheCoordinatorIsAway(t, func(r *running) { r.cancel() })
}

// TestG3GracefulStopReturnsWhileTheCoordinatorIsAway: the same for a graceful stop, whose
// final commit cannot complete either.
func TestG3GracefulStopReturnsWhileTheCoordinatorIsAway(t *testing.T) {
	testStopWhileTheCoordinatorIsAway(t, func(r *running) { close(r.shutdown) })
}

// awayAfterOffset1 is a Work of client that ran offsets 0 and 1 of its topic, the commit of
// 0 landed and that of 1 waits for a group coordinator that went away; late receives the
// channel of a consumer close left to the background.
type awayAfterOffset1 struct {
	cfg          ConsumerTopicConfig
	group, topic string
	r            *running
	done         chan int64
	late         chan (<-chan struct{})
	back         func() // the coordinator comes back
}

func runUntilTheCoordinatorIsAway(t *testing.T, e *testEnv, client *Client) *awayAfterOffset1 {
	t.Helper()
	a := &awayAfterOffset1{topic: e.newTopic(t, 1), group: uniqueTestName(t, "g"), done: make(chan int64, 16), late: make(chan (<-chan struct{}), 1)}
	a.cfg = ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: a.group, Topic: a.topic,
		SessionTimeoutMillis: intp(6000), MaxPollIntervalMillis: intp(10000)}
	w := NewWorkFactory(client).CreateWithFunc(a.cfg, func(ctx context.Context, m *Message) error {
		a.done <- m.Offset
		return nil
	})
	testHookClosingLate = func(gone <-chan struct{}) { a.late <- gone }
	t.Cleanup(func() { testHookClosingLate = nil })

	e.produce(t, a.topic, []rec{{Key: []byte("a"), Value: []byte("0")}})
	a.r = startWork(t, w)
	require.Equal(t, int64(0), nextOffset(t, a.done))
	require.Eventually(t, func() bool { return e.committed(t, a.group, a.topic)[0] == 1 }, 30*time.Second, 10*time.Millisecond)

	var refused <-chan struct{}
	refused, a.back = coordinatorAway(e.cluster, a.group, 2)
	t.Cleanup(a.back)
	e.produce(t, a.topic, []rec{{Key: []byte("a"), Value: []byte("1")}})
	require.Equal(t, int64(1), nextOffset(t, a.done))
	awaitRefused(t, refused) // the periodic commit of offset 1 waits for a coordinator
	return a
}

func testStopWhileTheCoordinatorIsAway(t *testing.T, stop func(*running)) {
	e := newEmbeddedEnv(t)
	a := runUntilTheCoordinatorIsAway(t, e, e.client(t))
	cfg, group, topic, r, done, late, back := a.cfg, a.group, a.topic, a.r, a.done, a.late, a.back
	t0 := time.Now()
	stop(r)
	select {
	case <-r.done:
		require.NoError(t, r.err)
		t.Logf("Run returned %v after the stop", time.Since(t0).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15 s of the stop while the coordinator is away")
	}
	var gone <-chan struct{}
	select {
	case gone = <-late:
	default:
		t.Fatal("the consumer closed although its commit could not complete")
	}
	require.Equal(t, int64(1), committedOf(e.cluster, group, topic, 0), "nothing reached the broker while the coordinator was away")

	// The group lets the silent member go (its session times out); then the coordinator comes
	// back, the waiting commit is refused as the stale member's, and the consumer closes.
	require.Eventually(t, func() bool {
		info := e.cluster.GroupInfo(group)
		return info != nil && len(info.Members) == 0
	}, 60*time.Second, 10*time.Millisecond)
	back()
	select {
	case <-gone:
	case <-time.After(60 * time.Second):
		t.Fatal("the consumer did not close within 60 s of the coordinator's return")
	}
	require.Equal(t, int64(1), committedOf(e.cluster, group, topic, 0))

	// At least once: the next worker of the group runs offset 1 again.
	r2 := startWork(t, NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		done <- m.Offset
		return nil
	}))
	require.Equal(t, int64(1), nextOffset(t, done))
	require.NoError(t, r2.stop(t))
	require.Equal(t, map[int32]int64{0: 2}, e.committed(t, group, topic))
}

// awaitRefused waits for coordinatorAway's first refusal. A CI run once waited here for
// ever: a commit sent just before the coordinator went away was never answered (librdkafka's
// CommitOffsets waited ten minutes, REQTMOUT every 61 s), so no later commit was sent.
func awaitRefused(t *testing.T, refused <-chan struct{}) {
	t.Helper()
	select {
	case <-refused:
	case <-time.After(30 * time.Second):
		t.Fatal("no commit reached the broker within 30 s (an earlier commit never answered?)")
	}
}

// committedOf is group's committed offset of topic's partition, -1 when none, read from the
// cluster itself (no request, so faults do not refuse it).
func committedOf(c *kfake.Cluster, group, topic string, partition int32) int64 {
	if info := c.GroupInfo(group); info != nil {
		if gc, ok := info.Commits[topic][partition]; ok {
			return gc.Offset
		}
	}
	return -1
}

// TestG14ClientCloseWaitsForAReplacedReaderStillClosing: a Run stops while the group
// coordinator is away, so its consumer closes in the background; the Client then makes a
// new reader with the same ClientID (a new Run would). Client.Close waits for the old
// consumer's close too, not only for the reader it now caches: none outlives it.
func TestG14ClientCloseWaitsForAReplacedReaderStillClosing(t *testing.T) {
	e := newEmbeddedEnv(t)
	logs := newCaptureLogger()
	client := NewClient(Config{BootstrapServers: []string{e.addr}}, LoggerOption(logs))
	a := runUntilTheCoordinatorIsAway(t, e, client)
	require.NoError(t, a.r.stop(t))
	var gone <-chan struct{}
	select {
	case gone = <-a.late:
	default:
		t.Fatal("the consumer closed although its commit could not complete")
	}
	// The line says what the close waits for: the periodic commit sent before the stop.
	late := logs.containing("closing the consumer takes long")
	require.Len(t, late, 1, "one line for the close left to the background")
	require.Contains(t, late[0], "warn zkafka: closing the consumer takes long: a commit in progress waits for a group coordinator that has not answered")
	require.Contains(t, late[0], "stage commit in progress")
	require.Contains(t, late[0], "rebalance_callbacks_in_close 0", "no rebalance callback ran inside the close")

	_, err := client.Reader(t.Context(), a.cfg) // replaces the closed reader in the cache
	require.NoError(t, err)
	closed := make(chan error, 1)
	go func() { closed <- client.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Client.Close returned (%v) while the replaced reader's consumer was still closing", err)
	case <-time.After(time.Second):
	}
	a.back()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(60 * time.Second):
		t.Fatal("Client.Close did not return within 60 s of the coordinator's return")
	}
	select {
	case <-gone:
	default:
		t.Fatal("Client.Close returned before the replaced reader's consumer closed")
	}
}
