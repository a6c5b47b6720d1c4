package zkafka

import (
	"context"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/zkafka-go/zkafka/testhelper"
)

// The log lines of a read stall and of a new consumer.
const (
	readStallLine = "warn zkafka: partition is stuck: it reads nothing while the broker has records for it"
	renewLine     = "warn zkafka: replacing the consumer with a new one, as a restart would"
)

// seenOffsets records the offsets a handler saw, by value, for exact checks.
type seenOffsets struct {
	mu   sync.Mutex
	seen map[string]int // value → times processed
	n    atomic.Int64
}

func newSeenOffsets() *seenOffsets { return &seenOffsets{seen: map[string]int{}} }

func (s *seenOffsets) handle(_ context.Context, m *Message) error {
	s.mu.Lock()
	s.seen[string(m.value)]++
	s.mu.Unlock()
	s.n.Add(1)
	return nil
}

func (s *seenOffsets) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.seen)
}

// valued makes n records with values prefix0 … prefix<n-1> on partition 0.
func valued(prefix string, n int) []rec {
	out := make([]rec, n)
	for i := range out {
		out[i] = rec{Key: []byte("k" + strconv.Itoa(i%3)), Value: []byte(prefix + strconv.Itoa(i))}
	}
	return out
}

// onceEach is the map of values prefix0 … prefix<n-1>, each seen once.
func onceEach(prefix string, n int) map[string]int {
	out := make(map[string]int, n)
	for i := range n {
		out[prefix+strconv.Itoa(i)] = 1
	}
	return out
}

// withholdFetches makes c answer every fetch with no data, after a long-poll's wait, until
// done is set: the partitions are in no answer, so librdkafka learns no end offset for them
// (a fault answers them with an error and a high watermark of 0, which librdkafka takes).
func withholdFetches(c *kfake.Cluster, done *atomic.Bool) {
	c.ControlKey(kmsg.Fetch.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if done.Load() {
			return nil, nil, false
		}
		c.KeepControl()
		c.SleepControl(func() { time.Sleep(fetchLongPoll) })
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.SetVersion(req.GetVersion())
		return resp, nil, true
	})
}

// fetchLongPoll is how long withholdFetches holds a fetch: librdkafka's fetch.wait.max.ms.
const fetchLongPoll = 500 * time.Millisecond

// TestReadStallIsStuckThenConsumerRenewed: a partition whose fetches the broker never answers
// with records (kfake answers every fetch of the first consumer empty) reads nothing
// while the broker has records for it. Status marks it stuck within StuckAfter + 5 s of its
// assignment, with its end offset unknown, and the Logger gets one warning (G18); once it has
// read nothing for renewAfter the Work replaces the consumer — the fault lasts as long as the
// first consumer, up to its LeaveGroup — and every record is then processed once and
// committed.
func TestReadStallIsStuckThenConsumerRenewed(t *testing.T) {
	e := newEmbeddedEnv(t) // fault injection: kfake on every machine
	topic := e.newTopic(t, 1)
	e.produce(t, topic, valued("before-", 5))
	var left atomic.Bool
	withholdFetches(e.cluster, &left)
	leaves := e.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.LeaveGroup, kmsg.ConsumerGroupHeartbeat}, Count: -1,
		When: func(req kmsg.Request) bool {
			if hb, ok := req.(*kmsg.ConsumerGroupHeartbeatRequest); !ok || hb.MemberEpoch == -1 { // the consumer protocol's leave
				left.Store(true)
			}
			return false
		}})
	t.Cleanup(leaves.Remove)

	logs := newCaptureLogger()
	seen := newSeenOffsets()
	const stuckAfter = time.Second
	group := uniqueTestName(t, "g")
	w := NewWorkFactory(e.client(t), WithLogger(logs)).CreateWithFunc(
		ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic},
		seen.handle, StuckAfter(stuckAfter))
	r := startWork(t, w)

	var stuck PartitionStatus
	var at time.Time
	var last Status
	ok := assert.Eventually(t, func() bool {
		st := w.Status()
		last = st
		if len(st.Partitions) != 1 || !st.Partitions[0].Stuck {
			return false
		}
		stuck, at = st.Partitions[0], st.TakenAt
		return true
	}, 30*time.Second, 20*time.Millisecond, "the stalled partition is marked stuck")
	if !ok {
		t.Fatalf("last status: %+v\nlogs:\n%s", last, strings.Join(logs.all(), "\n"))
	}
	require.LessOrEqual(t, at.Sub(stuck.AssignedAt), stuckAfter+5*time.Second, "stuck within StuckAfter + 5 s of the assignment")
	require.Equal(t, int64(-1), stuck.EndOffset)
	require.Equal(t, int64(-1), stuck.Lag)
	require.Nil(t, stuck.Oldest)
	require.True(t, strings.HasPrefix(stuck.StuckReason, readStallReason+" for "), stuck.StuckReason)
	require.Contains(t, stuck.StuckReason, "end offset is unknown")
	require.Zero(t, seen.n.Load())

	var lines []string
	require.Eventually(t, func() bool { return len(linesWith(logs, &lines, readStallLine)) == 1 },
		stuckCheckEvery+5*time.Second, 20*time.Millisecond, "one warning through the Logger")
	stall := linesWith(logs, &lines, readStallLine)[0]
	require.Contains(t, stall, topic)
	require.Contains(t, stall, "end offset is unknown")

	require.Eventually(t, func() bool { return len(linesWith(logs, &lines, renewLine)) == 1 },
		renewAfter(stuckAfter)+2*stuckCheckEvery+10*time.Second, 20*time.Millisecond, "a new consumer once the stall lasts renewAfter")
	require.Contains(t, linesWith(logs, &lines, renewLine)[0], "has read nothing for "+roundAge(renewAfter(stuckAfter)))
	require.Eventually(t, func() bool { return seen.n.Load() == 5 }, 30*time.Second, 20*time.Millisecond)
	require.True(t, left.Load(), "the old consumer left the group; its fetches stayed withheld")
	e.produce(t, topic, valued("after-", 5))
	require.Eventually(t, func() bool { return seen.n.Load() == 10 }, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, r.stop(t))

	want := onceEach("before-", 5)
	for k, v := range onceEach("after-", 5) {
		want[k] = v
	}
	require.Equal(t, want, seen.snapshot(), "every record processed once after the new consumer came")
	require.Equal(t, map[int32]int64{0: 10}, e.committed(t, group, topic))
	require.Len(t, linesWith(logs, &lines, readStallLine), 1, "one warning for the stall")
	require.Len(t, linesWith(logs, &lines, renewLine), 1, "one new consumer")
}

// TestResumedPartitionIsNotAReadStall: a partition paused at the in-flight bound for longer
// than StuckAfter, with records on the broker, is resumed; the broker holds the first fetch
// after the resume (as a busy one does). Until that fetch is answered Status does not mark the
// partition stuck and nothing is logged: the pause is not reading nothing. (Counting it once
// replaced the consumer of a Run on Apache Kafka the moment it resumed.) Every record is then
// processed once by the one consumer.
func TestResumedPartitionIsNotAReadStall(t *testing.T) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 1)
	const n, bound = 60, 10
	e.produce(t, topic, valued("v", n))
	logs := newCaptureLogger()
	seen := newSeenOffsets()
	release := make(chan struct{})
	const stuckAfter = 2 * time.Second
	group := uniqueTestName(t, "g")
	w := NewWorkFactory(e.client(t), WithLogger(logs)).CreateWithFunc(
		ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic},
		func(ctx context.Context, m *Message) error {
			<-release
			return seen.handle(ctx, m)
		}, StuckAfter(stuckAfter), MaxInFlight(bound))
	r := startWork(t, w)
	require.Eventually(t, func() bool {
		st := w.Status()
		return st.PausedBecause == PausedInFlightBound && len(st.Partitions) == 1 && st.Partitions[0].EndOffset == n
	}, 30*time.Second, 10*time.Millisecond, "paused at the bound, the end offset known")
	time.Sleep(stuckAfter + time.Second) // the test's input: a pause longer than StuckAfter

	read := make(chan struct{}) // closed once a record after the bound was read: fetches go on
	e.cluster.ControlKey(kmsg.Fetch.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		e.cluster.SleepControl(func() {
			select {
			case <-time.After(stuckAfter / 2):
			case <-read:
			}
		})
		return nil, nil, false // then answered as usual
	})
	close(release)
	resumed := 0 // snapshots taken resumed, before a record after the bound was read
	for deadline := time.Now().Add(30 * time.Second); seen.n.Load() < bound+1; {
		require.True(t, time.Now().Before(deadline), "no record after the bound was read within 30 s of the release")
		st := w.Status()
		if !st.Paused && len(st.Partitions) == 1 && st.Partitions[0].EndOffset == n && seen.n.Load() == bound {
			resumed++
			require.False(t, st.Partitions[0].Stuck, "taken after the resume: %s", st.Partitions[0].StuckReason)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(read)
	require.Positive(t, resumed, "Status was taken between the resume and the first fetch")
	require.Eventually(t, func() bool { return seen.n.Load() == n }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop(t))
	require.Equal(t, onceEach("v", n), seen.snapshot())
	var lines []string
	require.Empty(t, linesWith(logs, &lines, readStallLine))
	require.Empty(t, linesWith(logs, &lines, renewLine))
}

// clusterAt starts a kfake cluster with id on port (the cluster ids of two such clusters at
// one address differ, as after a broker whose data was wiped), closed when the test ends.
func clusterAt(t *testing.T, id string, port int) *kfake.Cluster {
	t.Helper()
	watchdog(t)
	opts := append(testhelper.DefaultEmbeddedOptions(), kfake.NumBrokers(1), kfake.Ports(port), kfake.ClusterID(id))
	var c *kfake.Cluster
	require.Eventually(t, func() bool { // the port of a cluster just closed may linger
		var err error
		c, err = kfake.NewCluster(opts...)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "kfake on port %d", port)
	t.Cleanup(c.Close)
	return c
}

// replaceCluster runs a worker on a kfake cluster until it has processed n records, closes
// the cluster, starts a new one (another cluster id, no data) on the same port, makes the
// topic again and writes n records there. It returns the worker's processed values and logs,
// the new cluster's address, the group and the topic.
type replacedCluster struct {
	seen  *seenOffsets
	logs  *captureLogger
	addr  string
	group string
	topic string
	run   *running
}

func replaceCluster(t *testing.T, n int) replacedCluster {
	port := freePort(t)
	name := uniqueTestName(t, "")
	first := clusterAt(t, "old-"+name, port)
	addr := first.ListenAddrs()[0]
	rc := replacedCluster{seen: newSeenOffsets(), logs: newCaptureLogger(), addr: addr, group: "g-" + name, topic: "t-" + name}
	testhelper.CreateTopic(t, addr, rc.topic, 1)
	testhelper.Produce(t, addr, rc.topic, valued("old-", n)...)
	c := NewClient(Config{BootstrapServers: []string{addr}}, LoggerOption(rc.logs))
	t.Cleanup(func() { _ = c.Close() })
	w := NewWorkFactory(c).CreateWithFunc(ConsumerTopicConfig{ClientID: "c-" + name, GroupID: rc.group, Topic: rc.topic},
		rc.seen.handle, StuckAfter(time.Second))
	rc.run = startWork(t, w)
	require.Eventually(t, func() bool { return rc.seen.n.Load() == int64(n) }, 30*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		st := w.Status()
		return len(st.Partitions) == 1 && st.Partitions[0].CommittedOffset == int64(n)
	}, 30*time.Second, 20*time.Millisecond, "the old cluster has the commit")

	first.Close()
	clusterAt(t, "new-"+name, port)
	testhelper.CreateTopic(t, addr, rc.topic, 1)
	testhelper.Produce(t, addr, rc.topic, valued("new-", n)...)
	return rc
}

// TestClusterChangeRenewsConsumer: the broker at the worker's address is replaced by a new
// cluster (another cluster id, its data gone, the topic made again and written to). The
// worker replaces its consumer, processes every new record once, and commits them on the new
// cluster; nothing of the old cluster's offsets reaches it.
func TestClusterChangeRenewsConsumer(t *testing.T) {
	const n = 20
	rc := replaceCluster(t, n)
	require.Eventually(t, func() bool { return rc.seen.n.Load() == 2*n }, 60*time.Second, 20*time.Millisecond,
		"the new cluster's records are processed")
	require.NoError(t, rc.run.stop(t))
	want := onceEach("old-", n)
	for k, v := range onceEach("new-", n) {
		want[k] = v
	}
	require.Equal(t, want, rc.seen.snapshot())
	require.Equal(t, map[int32]int64{0: n}, testhelper.CommittedOffsets(t, rc.addr, rc.group, rc.topic))
	var lines []string
	renewals := linesWith(rc.logs, &lines, renewLine)
	require.NotEmpty(t, renewals, "the worker says it made a new consumer")
	t.Logf("recovered by: %s", renewals[0][:min(len(renewals[0]), 200)])
}

// TestClusterChangePlainConsumer is the comparison for TestClusterChangeRenewsConsumer: a
// plain confluent-kafka-go consumer through the same cluster change, without the library. It
// only reports whether it read the new records within 60 s (librdkafka alone often does
// not), and runs only with ZKAFKA_COMPARE=1: make compare-cluster-change.
func TestClusterChangePlainConsumer(t *testing.T) {
	if os.Getenv("ZKAFKA_COMPARE") != "1" {
		t.Skip("a measurement, not a check of the library: ZKAFKA_COMPARE=1 runs it")
	}
	const n = 20
	port := freePort(t)
	name := uniqueTestName(t, "")
	first := clusterAt(t, "old-"+name, port)
	addr := first.ListenAddrs()[0]
	topic := "t-" + name
	testhelper.CreateTopic(t, addr, topic, 1)
	testhelper.Produce(t, addr, topic, valued("old-", n)...)
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": addr, "group.id": "g-" + name,
		"auto.offset.reset": "earliest", "log_level": 4})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	require.NoError(t, c.Subscribe(topic, nil))
	read := func(prefix string, want int, within time.Duration) int {
		got := 0
		for deadline := time.Now().Add(within); got < want && time.Now().Before(deadline); {
			m, err := c.ReadMessage(100 * time.Millisecond)
			if err == nil && strings.HasPrefix(string(m.Value), prefix) {
				got++
			}
		}
		return got
	}
	require.Equal(t, n, read("old-", n, 30*time.Second))
	_, err = c.Commit()
	require.NoError(t, err)
	first.Close()
	clusterAt(t, "new-"+name, port)
	testhelper.CreateTopic(t, addr, topic, 1)
	testhelper.Produce(t, addr, topic, valued("new-", n)...)
	got := read("new-", n, 60*time.Second)
	t.Logf("plain consumer read %d of %d new records: recovered=%v", got, n, got == n)
}

// TestReadStallJudgement: statusTaker.readStall for a partition with nothing unfinished: stuck
// only when not paused, its end offset is unknown or above its position, and nothing moved
// for StuckAfter.
func TestReadStallJudgement(t *testing.T) {
	now := time.Now()
	assigned := now.Add(-time.Minute)
	for _, tc := range []struct {
		name     string
		paused   bool
		end, pos int64
		lastRead int64
		readAt   time.Time
		resumed  time.Time // when the reader last resumed
		stuck    string    // the reason's end; "" not stuck
	}{
		{name: "end unknown", end: -1, pos: -1, lastRead: -1, stuck: "its end offset is unknown: no fetch of it was answered"},
		{name: "end above librdkafka's position", end: 9, pos: 4, lastRead: -1, stuck: "the broker has records up to offset 9 and it read up to 4"},
		{name: "end above what was read", end: 9, pos: -1, lastRead: 2, readAt: now.Add(-20 * time.Second), stuck: "the broker has records up to offset 9 and it read up to 3"},
		{name: "read to the end", end: 9, pos: 9, lastRead: 8},
		{name: "position after a transaction marker", end: 10, pos: 10, lastRead: 8},
		{name: "end known, position unknown", end: 9, pos: -1, lastRead: -1},
		{name: "paused", paused: true, end: -1, pos: -1, lastRead: -1},
		{name: "read lately", end: 9, pos: -1, lastRead: 2, readAt: now.Add(-time.Second)},
		{name: "resumed lately", end: 9, pos: 4, lastRead: -1, resumed: now.Add(-time.Second)},
		{name: "resumed long ago", end: 9, pos: 4, lastRead: -1, resumed: now.Add(-30 * time.Second), stuck: "the broker has records up to offset 9 and it read up to 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := PartitionStatus{EndOffset: tc.end, Paused: tc.paused}
			snap := trackerSnapshot{stored: -1, oldest: -1, committed: -1, assignedAt: assigned, lastRead: tc.lastRead, readAt: tc.readAt}
			statusTaker{now: now}.readStall(&ps, snap, tc.pos, tc.resumed, &Status{StuckAfterSeconds: 10})
			if tc.stuck == "" {
				require.False(t, ps.Stuck, ps.StuckReason)
				require.Zero(t, ps.StandingSeconds)
				return
			}
			require.True(t, ps.Stuck)
			standing := now.Sub(latest(tc.readAt, assigned, tc.resumed))
			require.Equal(t, readStallReason+" for "+roundAge(standing)+": "+tc.stuck, ps.StuckReason)
			require.Equal(t, standing.Seconds(), ps.StandingSeconds)
		})
	}
}

// TestStandingOfAMessageInNoQueue: an oldest unfinished message that Status finds in no queue
// stands since it was read when it is the last message read (caught being dispatched, after a
// partition that had not moved for long read again), else since the partition last moved.
func TestStandingOfAMessageInNoQueue(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name             string
		oldest, lastRead int64
		readAt           time.Time
		standing         time.Duration
		stuck            bool
	}{
		{name: "just read, being dispatched", oldest: 9, lastRead: 9, readAt: now.Add(-10 * time.Millisecond), standing: 10 * time.Millisecond},
		{name: "last read, long ago", oldest: 9, lastRead: 9, readAt: now.Add(-30 * time.Second), standing: 30 * time.Second, stuck: true},
		{name: "older than the last read", oldest: 5, lastRead: 9, readAt: now.Add(-10 * time.Millisecond), standing: 40 * time.Second, stuck: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := trackerSnapshot{stored: 5, oldest: tc.oldest, unfinished: 1, committed: 5, lastRead: tc.lastRead, readAt: tc.readAt,
				movedAt: now.Add(-40 * time.Second), assignedAt: now.Add(-time.Minute)}
			ps := PartitionStatus{EndOffset: 10}
			statusTaker{now: now}.fill(&ps, snap, sighting{}, false, &Status{StuckAfterSeconds: 10})
			require.Equal(t, WaitUnknown, ps.Oldest.WaitsFor)
			require.Equal(t, tc.standing.Seconds(), ps.StandingSeconds)
			require.Equal(t, tc.stuck, ps.Stuck, ps.StuckReason)
		})
	}
}

// TestStallRenewal: a new consumer is asked for once a partition has read nothing for
// renewAfter, not sooner, not while the brokers are unreachable, not while stopping.
func TestStallRenewal(t *testing.T) {
	kr := &KReader{}
	const stuckAfter = 3 * time.Second
	after := renewAfter(stuckAfter)
	require.Equal(t, 6*time.Second, after)
	require.Equal(t, minRenewAfter, renewAfter(time.Second))
	status := func(standing time.Duration, mod func(*Status)) Status {
		st := Status{Broker: BrokerStatus{Known: true, Reachable: true}, Partitions: []PartitionStatus{
			{Topic: "t", Partition: 1, Stuck: true, StuckReason: "held", StandingSeconds: 100, Oldest: &OldestUnfinished{}},
			{Topic: "t", Partition: 2, Stuck: true, StuckReason: readStallReason, StandingSeconds: standing.Seconds()},
		}}
		if mod != nil {
			mod(&st)
		}
		return st
	}
	r := stallRenewal(status(after, nil), kr, stuckAfter)
	require.NotNil(t, r)
	require.Same(t, kr, r.kr)
	require.False(t, r.cluster)
	require.Equal(t, []any{"topic", "t", "partition", int32(2), "stuck_reason", readStallReason, "stalled_partitions", 1}, r.kv)
	require.Nil(t, stallRenewal(status(after-time.Millisecond, nil), kr, stuckAfter), "not yet")
	require.Nil(t, stallRenewal(status(after, func(s *Status) { s.Broker.Reachable = false }), kr, stuckAfter), "brokers unreachable")
	require.Nil(t, stallRenewal(status(after, func(s *Status) { s.Stopping = true }), kr, stuckAfter), "stopping")
	require.Nil(t, stallRenewal(status(after, nil), nil, stuckAfter), "no reader of the library's own")
	require.NotNil(t, stallRenewal(status(after, func(s *Status) { s.Broker = BrokerStatus{} }), kr, stuckAfter), "broker state unknown")

	rs := &runState{}
	stall := &renewal{kr: kr}
	rs.requestRenewal(stall)
	rs.requestRenewal(&renewal{kr: kr})
	require.Same(t, stall, rs.renewal.Load(), "a pending stall request stays")
	cluster := &renewal{kr: kr, cluster: true}
	rs.requestRenewal(cluster)
	require.Same(t, cluster, rs.renewal.Load(), "a cluster change replaces it")
}
