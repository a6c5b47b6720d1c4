package zkafka

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/zkafka-go/zkafka/testhelper"
)

func TestG9ProcessDelay(t *testing.T) {
	const delay = 3 * time.Second
	mkCfg := func(t *testing.T, topic, group string, d time.Duration) ConsumerTopicConfig {
		return ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic,
			ProcessDelayMillis: intp(int(d / time.Millisecond)), MaxPollIntervalMillis: intp(1000), SessionTimeoutMillis: intp(1000),
			AdditionalProps: map[string]any{"heartbeat.interval.ms": 100}}
	}

	t.Run("held until due, once, without a rebalance, delays do not stack", func(t *testing.T) {
		e := newEnv(t)
		topic := e.newTopic(t, 2)
		group := uniqueTestName(t, "g")
		type seen struct {
			ts, start, end time.Time
		}
		var mu sync.Mutex
		got := map[tpo][]seen{}
		var count atomic.Int64
		w := NewWorkFactory(e.client(t)).CreateWithFunc(mkCfg(t, topic, group, delay), func(ctx context.Context, m *Message) error {
			start := time.Now()
			time.Sleep(10 * time.Millisecond)
			mu.Lock()
			k := tpo{m.Topic, m.Partition, m.Offset}
			got[k] = append(got[k], seen{m.TimeStamp, start, time.Now()})
			mu.Unlock()
			count.Add(1)
			return nil
		}, Speedup(2))
		r := startWork(t, w)
		var epoch int32 = -1
		if e.embedded() {
			gi, err := e.cluster.WaitGroupStable(context.Background(), group, 1)
			require.NoError(t, err)
			epoch = gi.Epoch
		} else {
			testhelper.WaitGroupStable(t, e.addr, group, 1, 30*time.Second)
		}
		// 20 messages over 3 keys, produced together: 6 or 7 of each key wait on one another.
		const n = 20
		e.produce(t, topic, keyed(n, 3))
		require.Eventually(t, func() bool { return count.Load() >= n }, 30*time.Second, 10*time.Millisecond)
		if e.embedded() {
			gi := e.cluster.GroupInfo(group)
			require.Equal(t, epoch, gi.Epoch, "a hold longer than max.poll.interval.ms does not rebalance")
			require.Len(t, gi.Members, 1)
		}
		require.NoError(t, r.stop(t))
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, got, n)
		var first, last time.Time
		for k, ss := range got {
			require.Len(t, ss, 1, "%v processed once", k)
			s := ss[0]
			require.False(t, s.start.Before(s.ts.Add(delay)), "%v started %s before its timestamp + delay", k, s.ts.Add(delay).Sub(s.start))
			if first.IsZero() || s.ts.Before(first) {
				first = s.ts
			}
			if s.end.After(last) {
				last = s.end
			}
		}
		t.Logf("first timestamp to last finish: %s (delay %s)", last.Sub(first), delay)
		require.Less(t, last.Sub(first), delay+2*time.Second, "delays do not stack")
		requireAllCommitted(t, e, group, topic)
	})

	t.Run("old messages are not held", func(t *testing.T) {
		const delay = time.Second
		e := newEnv(t)
		topic := e.newTopic(t, 1)
		e.produce(t, topic, []rec{{Key: []byte("k"), Value: []byte("old")}})
		time.Sleep(delay + 100*time.Millisecond) // the message becomes older than the delay
		started := make(chan time.Time, 1)
		var dispatchedAt atomic.Int64
		t0 := time.Now()
		w := NewWorkFactory(e.client(t)).CreateWithFunc(mkCfg(t, topic, uniqueTestName(t, "g"), delay), func(ctx context.Context, m *Message) error {
			started <- time.Now()
			return nil
		}, WithLifecycleHooks(LifecycleHooks{PostRead: func(ctx context.Context, _ LifecyclePostReadMeta) (context.Context, error) {
			dispatchedAt.CompareAndSwap(0, time.Now().UnixNano())
			return ctx, nil
		}}))
		r := startWork(t, w)
		s := <-started
		held := s.Sub(time.Unix(0, dispatchedAt.Load()))
		t.Logf("read %s after Run began, processing started %s after it was read", time.Unix(0, dispatchedAt.Load()).Sub(t0), held)
		require.Less(t, held, delay/2, "a message older than the delay is processed at once")
		require.NoError(t, r.stop(t))
	})

	t.Run("shutdown during a hold leaves the message uncommitted", func(t *testing.T) {
		e := newEnv(t)
		topic := e.newTopic(t, 1)
		group := uniqueTestName(t, "g")
		e.produce(t, topic, []rec{{Key: []byte("k"), Value: []byte("0")}})
		var processed atomic.Int64
		dispatched := make(chan struct{}, 1)
		w := NewWorkFactory(e.client(t)).CreateWithFunc(mkCfg(t, topic, group, delay), func(ctx context.Context, m *Message) error {
			processed.Add(1)
			return nil
		}, WithLifecycleHooks(LifecycleHooks{PostRead: func(ctx context.Context, _ LifecyclePostReadMeta) (context.Context, error) {
			signal(dispatched) // PostRead runs as the reader dispatches a message
			return ctx, nil
		}}))
		r := startWork(t, w)
		<-dispatched
		t0 := time.Now()
		require.NoError(t, r.stop(t))
		require.Less(t, time.Since(t0), delay/2, "the stop does not wait for the hold")
		require.Zero(t, processed.Load())
		requireNothingCommittedPast(t, e.committed(t, group, topic), 0, "the held message is not committed")
	})
}

func TestG10TimeoutCancelsAndFailsTheMessage(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, []rec{{Key: []byte("k"), Value: []byte("1")}, {Key: []byte("k"), Value: []byte("2")}})
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic, ProcessTimeoutMillis: intp(200)}
	events := make(chan string, 10)
	results := make(chan error, 10)
	wf := NewWorkFactory(e.client(t))
	w := wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		if m.Offset == 0 {
			<-ctx.Done()
			events <- "first saw cancel"
			return ctx.Err()
		}
		events <- "second started"
		return nil
	}, WithOnDone(func(ctx context.Context, m *Message, err error) { results <- err }))
	r := startWork(t, w)
	require.Equal(t, "first saw cancel", <-events)
	err := <-results
	require.ErrorIs(t, err, errProcessTimeout)
	require.Equal(t, "second started", <-events)
	require.NoError(t, <-results)
	require.NoError(t, r.stop(t))
	require.Zero(t, w.Status().AbandonedHandlers)
	require.Equal(t, map[int32]int64{0: 2}, e.committed(t, group, topic), "a failed message without dead letter topic is skipped")
}

func TestG10NextMessageWaitsForTheAbandonedHandler(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, []rec{{Key: []byte("k"), Value: []byte("1")}, {Key: []byte("k"), Value: []byte("2")}})
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: uniqueTestName(t, "g"), Topic: topic, ProcessTimeoutMillis: intp(100)}
	stuck := make(chan struct{})
	secondStarted := make(chan int64, 1)
	var w *Work
	wf := NewWorkFactory(e.client(t))
	w = wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		if m.Offset == 0 {
			<-stuck // ignores its context
			return nil
		}
		secondStarted <- w.Status().AbandonedHandlers
		return nil
	})
	r := startWork(t, w)
	abandonedWhenSecondStarted := <-secondStarted
	require.Equal(t, int64(1), abandonedWhenSecondStarted, "the second message started only once the first handler was abandoned")
	close(stuck)
	require.NoError(t, r.stop(t))
}

// TestG10TimeoutsAndAbandonsInARow: on one virtual partition, handlers that wait for their
// context to end and handlers that ignore it (abandoned, each replaced by a new serving
// goroutine) follow one another; every message is finished, each waiting handler is released
// by its own timeout, and each ignoring one is abandoned once.
func TestG10TimeoutsAndAbandonsInARow(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	const n = 30
	recs := make([]rec, n)
	for i := range recs {
		recs[i] = rec{Key: []byte("k"), Value: []byte(strconv.Itoa(i))}
	}
	e.produce(t, topic, recs)
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: uniqueTestName(t, "g"), Topic: topic, ProcessTimeoutMillis: intp(50)}
	release := make(chan struct{})
	var done, waited atomic.Int64
	w := NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		if m.Offset%5 == 4 {
			<-release // ignores its context: abandoned after the timeout and the grace period
			return nil
		}
		start := time.Now()
		<-ctx.Done()
		if time.Since(start) < 2*time.Second {
			waited.Add(1)
		}
		return ctx.Err()
	}, Speedup(1), DisableCircuitBreaker(), WithOnDone(func(context.Context, *Message, error) { done.Add(1) }))
	r := startWork(t, w)
	require.Eventually(t, func() bool { return done.Load() == n }, 60*time.Second, 10*time.Millisecond, "every message finished")
	require.Equal(t, int64(n-n/5), waited.Load(), "each waiting handler was released by its own timeout")
	require.Equal(t, int64(n/5), w.Status().AbandonedHandlers)
	close(release)
	require.NoError(t, r.stop(t))
}

// TestChainOnlyWhenNothingRunsBetweenHandlers: the processors take a handler's end as the
// next handler's start (processors.chain) only when none of the user's code runs between the
// two: no span, no Pre- or PostProcessing hook, no OnDone callback, no ProcessDelayMillis.
func TestChainOnlyWhenNothingRunsBetweenHandlers(t *testing.T) {
	noop := func(context.Context, *Message) error { return nil }
	delay := 10
	cases := []struct {
		name    string
		factory []WorkFactoryOption
		opts    []WorkOption
		delay   *int
		chain   bool
	}{
		{name: "plain", chain: true},
		{name: "a PostFanout hook runs on the reader", opts: []WorkOption{WithLifecycleHooks(LifecycleHooks{
			PostFanout: func(context.Context) {},
		})}, chain: true},
		{name: "OnDone", opts: []WorkOption{WithOnDone(func(context.Context, *Message, error) {})}},
		{name: "PreProcessing", opts: []WorkOption{WithLifecycleHooks(LifecycleHooks{
			PreProcessing: func(ctx context.Context, _ LifecyclePreProcessingMeta) (context.Context, error) { return ctx, nil },
		})}},
		{name: "PostProcessing", opts: []WorkOption{WithLifecycleHooks(LifecycleHooks{
			PostProcessing: func(ctx context.Context, _ LifecyclePostProcessingMeta) error { return nil },
		})}},
		{name: "a tracer", factory: []WorkFactoryOption{WithTracerProvider(tracenoop.NewTracerProvider())}},
		{name: "ProcessDelayMillis", delay: &delay},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := ConsumerTopicConfig{ClientID: "c", GroupID: "g", Topic: "t", ProcessDelayMillis: c.delay}
			w := NewWorkFactory(&FakeClient{}, c.factory...).CreateWithFunc(cfg, noop, c.opts...)
			p := w.newProcessors(&runState{ctx: context.Background()}, nil)
			require.Equal(t, c.chain, p.chain)
		})
	}
}

// TestChainedStartNotCarriedOverAWait: a handler's end is taken as the next message's start
// (processors.chain) only when the processor went straight on. After its virtual partition
// stalled on a dead letter that could not be written, and after an idle queue, the next
// handler gets its whole ProcessTimeoutMillis from when it starts.
func TestChainedStartNotCarriedOverAWait(t *testing.T) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 1)
	dlt := e.newTopic(t, 1)
	const n, bad = 7, 3
	var recs []rec
	for i := 0; i < n; i++ {
		recs = append(recs, rec{Key: []byte("a"), Value: []byte(strconv.Itoa(i)), Partition: 0})
	}
	e.produce(t, topic, recs[:1])
	fault := dltProduceFault(e, dlt, kerr.TopicAuthorizationFailed)

	const timeout = 2 * time.Second
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic,
		ProcessTimeoutMillis: intp(int(timeout / time.Millisecond)), DeadLetterTopicConfig: &ProducerTopicConfig{Topic: dlt}}
	var mu sync.Mutex
	left := map[int64]time.Duration{} // offset: the time to its deadline when its handler began
	var w *Work
	w = NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		d, _ := ctx.Deadline()
		mu.Lock()
		left[m.Offset] = time.Until(d)
		mu.Unlock()
		switch m.Offset {
		case bad:
			return errors.New("boom")
		case bad + 1:
			// Returns once the dead letter's write failed and stalls the virtual partition: the
			// processor goes straight on into the stall.
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if rs := w.run.Load(); rs != nil && rs.vps[0].stalls.Load() > 0 {
					return nil
				}
			}
			return errors.New("the virtual partition never stalled")
		}
		return nil
	}, Speedup(1))
	r := startWork(t, w)
	offsets := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(left)
	}
	// What is read before the first commit waits for it (poison.go): the rest is read after.
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == 1 }, 30*time.Second, 10*time.Millisecond)
	e.produce(t, topic, recs[1:n-1])
	// The dead letter of offset 3 is refused a few times: the virtual partition stalls after
	// offset 4.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, fault.Wait(ctx, 3))
	stalled := offsets()
	time.Sleep(300 * time.Millisecond)
	fault.Remove()
	require.Eventually(t, func() bool { return offsets() == n-1 }, 30*time.Second, 10*time.Millisecond)
	// An idle queue, then one more record.
	time.Sleep(300 * time.Millisecond)
	e.produce(t, topic, recs[n-1:])
	require.Eventually(t, func() bool { return offsets() == n }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop(t))

	mu.Lock()
	defer mu.Unlock()
	t.Logf("time to the deadline at each start: %v", left)
	require.Less(t, stalled, n-1, "some records were left for after the stall")
	for off, d := range left {
		require.Greater(t, d, timeout-250*time.Millisecond, "offset %d began with %s to its deadline", off, d)
	}
}
