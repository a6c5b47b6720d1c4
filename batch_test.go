package zkafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/zkafka-go/zkafka/internal/commit"
)

// batchOrder checks G2 and G20 while a batch Work runs: a batch's messages are of one virtual
// partition (PreProcessing tells each message's), at most max of them; per key, offsets only
// grow, within and across batches; no two batches hold a key at once. It counts each offset's
// runs.
type batchOrder struct {
	mu      sync.Mutex
	max     int
	vpOf    map[tpo]int // the virtual partition PreProcessing saw for each message
	last    map[string]int64
	active  map[string]bool
	seen    map[tpo]int
	batches atomic.Int64
	count   atomic.Int64 // distinct offsets run
	dupes   atomic.Int64
	sizes   []int
	errs    []string
}

func newBatchOrder(max int) *batchOrder {
	return &batchOrder{max: max, vpOf: map[tpo]int{}, last: map[string]int64{}, active: map[string]bool{}, seen: map[tpo]int{}}
}

func posOf(m *Message) tpo { return tpo{topic: m.Topic, partition: m.Partition, offset: m.Offset} }

func keyName(m *Message) string { return fmt.Sprintf("%s/%d/%s", m.Topic, m.Partition, m.Key) }

// hooks records the virtual partition of each message.
func (o *batchOrder) hooks() WorkOption {
	return WithLifecycleHooks(LifecycleHooks{PreProcessing: func(ctx context.Context, meta LifecyclePreProcessingMeta) (context.Context, error) {
		o.mu.Lock()
		o.vpOf[posOf(meta.Message)] = meta.VirtualPartitionIndex
		o.mu.Unlock()
		return ctx, nil
	}})
}

func (o *batchOrder) fail(format string, args ...any) {
	o.errs = append(o.errs, fmt.Sprintf(format, args...))
}

func (o *batchOrder) begin(msgs []*Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.batches.Add(1)
	o.sizes = append(o.sizes, len(msgs))
	if len(msgs) == 0 || len(msgs) > o.max {
		o.fail("a batch of %d (max %d)", len(msgs), o.max)
		return
	}
	vp := o.vpOf[posOf(msgs[0])]
	mine := map[string]bool{}
	for _, m := range msgs {
		if v := o.vpOf[posOf(m)]; v != vp {
			o.fail("one batch on virtual partitions %d and %d", vp, v)
		}
		k := keyName(m)
		if o.active[k] && !mine[k] {
			o.fail("two batches hold key %s at once (offset %d)", k, m.Offset)
		}
		mine[k] = true
		if prev, ok := o.last[k]; ok && prev >= m.Offset {
			o.fail("key %s: offset %d after %d", k, m.Offset, prev)
		}
		o.last[k] = m.Offset
		o.seen[posOf(m)]++
		if o.seen[posOf(m)] > 1 {
			o.dupes.Add(1)
		} else {
			o.count.Add(1)
		}
	}
	for k := range mine {
		o.active[k] = true
	}
}

func (o *batchOrder) end(msgs []*Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range msgs {
		delete(o.active, keyName(m))
	}
}

func (o *batchOrder) check(t testing.TB) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	require.Empty(t, o.errs)
}

// TestG20BatchesKeepKeyOrderAndEveryMessageOnce: 10,000 messages of 200 keys over 4 partitions,
// a batch processor at Speedup 8 (G1, G2, G3 with batches): every batch is of one virtual
// partition and at most MaxMessages, per key in offset order within and across batches, each
// message once; the graceful stop commits everything, and a restarted worker runs nothing old.
func TestG20BatchesKeepKeyOrderAndEveryMessageOnce(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 4)
	const n, keys, maxBatch = 10000, 200, 50
	e.produce(t, topic, keyed(n, keys))
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	o := newBatchOrder(maxBatch)
	wf := NewWorkFactory(e.client(t))
	w := wf.CreateBatchWithFunc(cfg, func(_ context.Context, msgs []*Message) error {
		o.begin(msgs)
		time.Sleep(100 * time.Microsecond)
		o.end(msgs)
		return nil
	}, Speedup(8), WithBatch(BatchPolicy{MaxMessages: maxBatch}), o.hooks())
	r := startWork(t, w)
	require.Eventually(t, func() bool { return o.count.Load() == n }, 120*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop(t))
	o.check(t)
	require.Zero(t, o.dupes.Load(), "nothing is processed twice in one uninterrupted run")
	require.Less(t, o.batches.Load(), int64(n/2), "messages are batched")
	require.Equal(t, e.endOffsets(t, topic), e.committed(t, group, topic), "graceful shutdown commits everything processed (G3)")
	t.Logf("%d messages in %d batches", n, o.batches.Load())

	e.produce(t, topic, []rec{{Key: []byte("sentinel"), Value: []byte("new"), Partition: 0}})
	var got []string
	var mu sync.Mutex
	w2 := wf.CreateBatchWithFunc(cfg, func(_ context.Context, msgs []*Message) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			got = append(got, m.Key)
		}
		return nil
	}, Speedup(8))
	r2 := startWork(t, w2)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 }, 60*time.Second, 10*time.Millisecond)
	require.NoError(t, r2.stop(t))
	require.Equal(t, []string{"sentinel"}, got)
}

// runLog records each run of a message in a batch as key@offset#attempt, and each batch.
type runLog struct {
	mu      sync.Mutex
	runs    []string
	batches [][]int64
	ran     chan struct{}
}

func newRunLog() *runLog { return &runLog{ran: make(chan struct{}, 1)} }

func (l *runLog) add(msgs []*Message) {
	l.mu.Lock()
	offs := make([]int64, len(msgs))
	for i, m := range msgs {
		l.runs = append(l.runs, fmt.Sprintf("%s@%d#%d", m.Key, m.Offset, m.Attempt()))
		offs[i] = m.Offset
	}
	l.batches = append(l.batches, offs)
	l.mu.Unlock()
	signal(l.ran)
}

func (l *runLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.runs...)
}

func (l *runLog) allBatches() [][]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([][]int64(nil), l.batches...)
}

// of returns the runs of key k, in order.
func (l *runLog) of(k string) []string {
	var out []string
	for _, r := range l.all() {
		if strings.HasPrefix(r, k+"@") {
			out = append(out, r)
		}
	}
	return out
}

// waitFor waits until the run s has happened.
func (l *runLog) waitFor(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		for _, got := range l.all() {
			if got == s {
				return
			}
		}
		select {
		case <-l.ran:
		case <-deadline:
			t.Fatalf("%s did not run within %s; runs: %v", s, within, l.all())
		}
	}
}

// TestG20BatchPartialFailure: one message (offset 30, key "bad") of a batch of 100 fails with a
// transient error on every attempt, under WithRetry (3 attempts) and a dead letter topic. The
// other 99 finish at once: before its first retry runs, the commit says every offset but 30 and
// the later ones of its key (60, 90) is finished. Those two ran in the batch but wait behind it:
// they run again, in order, after it reached the dead letter topic after its third attempt,
// with its headers.
func TestG20BatchPartialFailure(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	dlt := e.newTopic(t, 1)
	const n, bad = 100, 30
	var recs []rec
	for i := range n {
		k := "k" + strconv.Itoa(i%7)
		if i%30 == 0 && i > 0 {
			k = "bad"
		}
		recs = append(recs, rec{Key: []byte(k), Value: []byte(strconv.Itoa(i))})
	}
	e.produce(t, topic, recs)
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic, AutoCommitIntervalMs: intp(20)}
	runs := newRunLog()
	retrying := make(chan struct{}) // closed by the test once it looked at the commit
	var once sync.Once
	w := NewWorkFactory(e.client(t)).CreateBatchWithFunc(cfg, func(_ context.Context, msgs []*Message) error {
		runs.add(msgs)
		var be BatchError
		for i, m := range msgs {
			if m.Offset != bad {
				continue
			}
			if m.Attempt() == 2 {
				<-retrying
			}
			be.Fail(i, fmt.Errorf("attempt %d failed", m.Attempt()))
		}
		if len(be.Failed) > 0 {
			return &be
		}
		return nil
	}, WithBatch(BatchPolicy{MaxMessages: n, MaxWait: time.Second}),
		WithRetry(RetryPolicy{MaxAttempts: 3, InitialBackoff: 50 * time.Millisecond}),
		WithDeadLetterTopic(ProducerTopicConfig{Topic: dlt}))
	r := startWork(t, w)
	defer once.Do(func() { close(retrying) })

	runs.waitFor(t, "bad@30#2", 30*time.Second) // the retry has started and waits for the test
	first := runs.allBatches()[0]
	require.Len(t, first, n, "the first batch holds all 100")
	for i, off := range first {
		require.Equal(t, int64(i), off, "read order")
	}
	// The 99 others are finished and committed, but for 60 and 90, behind 30.
	want := map[int64]bool{}
	for off := int64(bad + 1); off < n; off++ {
		if off != 60 && off != 90 {
			want[off] = true
		}
	}
	require.Eventually(t, func() bool {
		c := e.completions(t, group, topic)[0]
		return c != nil && c.Base == bad && len(finishedIn(c)) == len(want)
	}, 10*time.Second, 10*time.Millisecond, "committed: offset 30, with 31..99 but 60 and 90 finished above it")
	require.Equal(t, want, finishedIn(e.completions(t, group, topic)[0]), "60 and 90 wait behind 30")
	require.Equal(t, map[int32]int64{0: bad}, e.committed(t, group, topic))
	once.Do(func() { close(retrying) })

	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == n }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop(t))
	require.Equal(t, []string{"bad@30#1", "bad@60#1", "bad@90#1", "bad@30#2", "bad@30#3", "bad@60#1", "bad@90#1"}, runs.of("bad"),
		"30 runs three times; 60 and 90 ran in the batch and again behind it, in order")
	for i := range 7 {
		k := "k" + strconv.Itoa(i)
		for _, r := range runs.of(k) {
			require.True(t, strings.HasSuffix(r, "#1"), "%s ran once", r)
		}
	}
	require.Len(t, runs.all(), n+4)
	dead := e.consumeAll(t, dlt, 1)
	require.Len(t, dead, 1)
	require.Equal(t, "bad", string(dead[0].Key))
	require.Equal(t, "30", string(dead[0].Headers[HeaderOriginalOffset]))
	require.Equal(t, "3", string(dead[0].Headers[HeaderAttempt]))
	require.Equal(t, "attempt 3 failed", string(dead[0].Headers[HeaderError]))
	require.Equal(t, FailureCounts{Retried: 2, DeadLettered: 1}, w.Status().Failures)
}

// finishedIn returns the offsets a commit's metadata says are finished above its offset.
func finishedIn(c *commit.Completions) map[int64]bool {
	out := map[int64]bool{}
	off := c.Base
	for i, r := range c.Runs {
		if i%2 == 1 {
			for j := range int64(r) {
				out[off+j] = true
			}
		}
		off += int64(r)
	}
	return out
}

// TestG20BatchWholeFailure: an error that is not a BatchError fails every message of its batch,
// each down the path a single message takes: a plain error is transient, so the first message
// of each key is retried (WithRetry) and the later ones of the key wait behind it and run again
// after it, in order; a panic is permanent: every message of the batch is dead-lettered at its
// first attempt, none retried.
func TestG20BatchWholeFailure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fail  func() error
		dead  bool
		retry bool
	}{
		{name: "error", fail: func() error { return errors.New("bulk endpoint down") }, retry: true},
		{name: "panic", fail: func() error { panic("bulk endpoint broke") }, dead: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			topic := e.newTopic(t, 1)
			dlt := e.newTopic(t, 1)
			const n = 20
			e.produce(t, topic, keyed(n, 3))
			group := uniqueTestName(t, "g")
			cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
			runs := newRunLog()
			var calls atomic.Int64
			var firstSize atomic.Int64
			w := NewWorkFactory(e.client(t)).CreateBatchWithFunc(cfg, func(_ context.Context, msgs []*Message) error {
				runs.add(msgs)
				if calls.Add(1) == 1 {
					firstSize.Store(int64(len(msgs)))
					return tc.fail()
				}
				return nil
			}, WithBatch(BatchPolicy{MaxWait: 500 * time.Millisecond, MaxMessages: n}), WithRetry(RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond}),
				WithDeadLetterTopic(ProducerTopicConfig{Topic: dlt}))
			r := startWork(t, w)
			require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == n }, 30*time.Second, 10*time.Millisecond)
			require.NoError(t, r.stop(t))
			require.Equal(t, int64(n), firstSize.Load(), "the first batch holds all")
			if tc.dead {
				require.Equal(t, map[int32]int64{0: n}, e.endOffsets(t, dlt), "every message of the batch is dead-lettered")
				require.Len(t, runs.all(), n, "a panic is not retried")
				require.Equal(t, FailureCounts{Permanent: n, DeadLettered: n}, w.Status().Failures)
				return
			}
			require.Equal(t, map[int32]int64{0: 0}, e.endOffsets(t, dlt))
			require.Len(t, runs.all(), 2*n, "every message runs twice")
			for k := range 3 {
				// The key's first message is retried; the later ones wait behind it and run
				// again after it, in order.
				var want []string
				for i := k; i < n; i += 3 {
					want = append(want, fmt.Sprintf("k%d@%d#1", k, i))
				}
				want = append(want, fmt.Sprintf("k%d@%d#2", k, k))
				for i := k + 3; i < n; i += 3 {
					want = append(want, fmt.Sprintf("k%d@%d#1", k, i))
				}
				require.Equal(t, want, runs.of(fmt.Sprintf("k%d", k)))
			}
			require.Equal(t, FailureCounts{Retried: 3}, w.Status().Failures, "one retry per key: the rest wait behind it")
		})
	}
}
