package zkafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// The guarantees of S4 run with a batch processor (G20): breaker, delay, timeouts, stops,
// rebalance, Status, hooks and metrics. batch_test.go has order, partial and whole failures.

// TestG20BatchBreakerCountsABatchOnce (G11): with CircuitBreakAfter(3) and every batch failing
// with a transient error, the breaker opens after three failed batches, however many messages
// they held: ProcessBatch runs exactly three times, and every message of those batches is
// skipped (no dead letter topic), each once.
func TestG20BatchBreakerCountsABatchOnce(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	const n = 50
	e.produce(t, topic, keyed(n, 10))
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	var calls, msgs atomic.Int64
	opened := make(chan struct{})
	var once sync.Once
	w := NewWorkFactory(e.client(t)).CreateBatchWithFunc(cfg, func(_ context.Context, batch []*Message) error {
		calls.Add(1)
		msgs.Add(int64(len(batch)))
		return errors.New("bulk endpoint down")
	}, WithBatch(BatchPolicy{MaxMessages: 5}), CircuitBreakAfter(3), CircuitBreakFor(time.Minute),
		WithLifecycleHooks(LifecycleHooks{CircuitBreakerStateChanged: func(_ context.Context, c LifecycleCircuitBreakerStateChanged) {
			if c.To == CircuitBreakerStateOpen {
				once.Do(func() { close(opened) })
			}
		}}))
	r := startWork(t, w)
	select {
	case <-opened:
	case <-time.After(30 * time.Second):
		t.Fatal("the breaker did not open")
	}
	require.Eventually(t, func() bool { return w.Status().Failures.Skipped == msgs.Load() }, 10*time.Second, time.Millisecond)
	require.Equal(t, int64(3), calls.Load(), "three failed batches open the breaker")
	require.Greater(t, msgs.Load(), int64(3), "batches of more than one message")
	require.Equal(t, "open", w.Status().Breaker)
	require.NoError(t, r.stop(t))
	require.Equal(t, int64(3), calls.Load(), "no batch starts while the breaker is open, a stop included")
	require.Equal(t, map[int32]int64{0: msgs.Load()}, e.committed(t, group, topic), "the skipped messages are finished, the rest is not")
}

// TestG20BatchProcessDelay (G9): with ProcessDelayMillis 400 and messages produced in two waves
// 500 ms apart, no message is in a batch before its timestamp + 400 ms, and a batch holds only
// due messages: the first wave is processed before the second is due, apart from it. The
// waves are produced once the partition is assigned: a worker that read the first wave only
// when the second was due too would rightly batch them together (a CI run on a slow host
// joined the group that late under the consumer protocol).
func TestG20BatchProcessDelay(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	const delay = 400 * time.Millisecond
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic, ProcessDelayMillis: intp(int(delay / time.Millisecond))}
	var mu sync.Mutex
	var batches [][]int64
	var early []string
	w := NewWorkFactory(e.client(t)).CreateBatchWithFunc(cfg, func(_ context.Context, msgs []*Message) error {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		var offs []int64
		for _, m := range msgs {
			if now.Before(m.TimeStamp.Add(delay)) {
				early = append(early, fmt.Sprintf("offset %d at %s before due", m.Offset, m.TimeStamp.Add(delay).Sub(now)))
			}
			offs = append(offs, m.Offset)
		}
		batches = append(batches, offs)
		return nil
	}, WithBatch(BatchPolicy{MaxWait: 50 * time.Millisecond}))
	r := startWork(t, w)
	require.Eventually(t, func() bool { return len(w.Status().Partitions) == 1 }, 60*time.Second, 10*time.Millisecond)
	e.produce(t, topic, keyed(10, 3))
	time.Sleep(500 * time.Millisecond) // the test's input: a second wave, 500 ms later
	e.produce(t, topic, keyed(10, 3))
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == 20 }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop(t))
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, early)
	for _, b := range batches {
		require.False(t, b[0] < 10 && b[len(b)-1] >= 10, "a batch of both waves: %v", b)
	}
}

// TestG20BatchTimeout (G10): a batch that outlives ProcessTimeoutMillis fails as a whole, each
// message dead-lettered with the timeout's error, unless its handler answers the cancelled
// context with a BatchError: then only the messages it names are dead-lettered. A batch
// handler that ignores its context is abandoned after the grace period, as a whole: its
// messages are dead-lettered, the handler is counted, and the next batch runs.
func TestG20BatchTimeout(t *testing.T) {
	for _, mode := range []string{"cancelled", "answered", "abandoned"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			topic := e.newTopic(t, 1)
			dlt := e.newTopic(t, 1)
			const n = 6
			group := uniqueTestName(t, "g")
			cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic, ProcessTimeoutMillis: intp(300)}
			release := make(chan struct{})
			defer close(release)
			var calls atomic.Int64
			var firstSize atomic.Int64
			w := NewWorkFactory(e.client(t)).CreateBatchWithFunc(cfg, func(ctx context.Context, msgs []*Message) error {
				if calls.Add(1) > 1 {
					return nil
				}
				firstSize.Store(int64(len(msgs)))
				switch mode {
				case "abandoned":
					<-release
					return nil
				case "answered": // the first is done; the second runs into the timeout; the third never starts
					<-ctx.Done()
					return &BatchError{Failed: map[int]error{1: ctx.Err(), 2: ctx.Err()}}
				}
				<-ctx.Done()
				return ctx.Err()
			}, WithBatch(BatchPolicy{MaxMessages: 3, MaxWait: time.Second}), WithDeadLetterTopic(ProducerTopicConfig{Topic: dlt}))
			r := startWork(t, w)
			e.produce(t, topic, keyed(n, 2))
			require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == n }, 30*time.Second, 10*time.Millisecond)
			require.NoError(t, r.stop(t))
			require.Equal(t, int64(3), firstSize.Load())
			first := 0
			if mode == "answered" {
				first = 1
			}
			dead := e.consumeAll(t, dlt, 3-first)
			for i, d := range dead {
				require.Equal(t, fmt.Sprint(first+i), string(d.Headers[HeaderOriginalOffset]))
				require.Contains(t, string(d.Headers[HeaderError]), "exceeded ProcessTimeoutMillis")
			}
			require.Equal(t, map[int32]int64{0: int64(3 - first)}, e.endOffsets(t, dlt))
			if mode == "abandoned" {
				require.Equal(t, int64(1), w.Status().AbandonedHandlers)
			} else {
				require.Zero(t, w.Status().AbandonedHandlers)
			}
		})
	}
}

// TestG20BatchAbruptStop (G4): a cancel while a batch is in its handler returns promptly; the
// batch is not finished, committed nor dead-lettered; the next worker of the group gets it all.
func TestG20BatchAbruptStop(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	dlt := e.newTopic(t, 1)
	const n = 10
	e.produce(t, topic, keyed(n, 3))
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	wf := NewWorkFactory(e.client(t))
	started := make(chan int, 1)
	w := wf.CreateBatchWithFunc(cfg, func(ctx context.Context, msgs []*Message) error {
		started <- len(msgs)
		<-ctx.Done()
		return ctx.Err()
	}, WithBatch(BatchPolicy{MaxWait: time.Second, MaxMessages: n}), WithDeadLetterTopic(ProducerTopicConfig{Topic: dlt}))
	r := startWork(t, w)
	require.Equal(t, n, <-started)
	t0 := time.Now()
	r.cancel()
	select {
	case <-r.done:
		require.NoError(t, r.err)
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2 s of the cancel")
	}
	require.Less(t, time.Since(t0), 2*time.Second)
	requireNothingCommittedPast(t, e.committed(t, group, topic), 0, "nothing of the batch is finished")

	runs := newRunLog()
	w2 := wf.CreateBatchWithFunc(cfg, func(_ context.Context, msgs []*Message) error {
		runs.add(msgs)
		return nil
	}, WithDeadLetterTopic(ProducerTopicConfig{Topic: dlt}))
	r2 := startWork(t, w2)
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == n }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, r2.stop(t))
	require.Len(t, runs.all(), n)
	require.Equal(t, map[int32]int64{0: 0}, e.endOffsets(t, dlt), "a cancel dead-letters nothing")
}

// TestG20BatchGracefulStopFinishesTheRunningBatch (G3): a stop while a batch is in its handler
// waits for it; the batch and what is queued behind it finish, and all is committed.
func TestG20BatchGracefulStopFinishesTheRunningBatch(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	const n = 30
	e.produce(t, topic, keyed(n, 3))
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	var done atomic.Int64
	w := NewWorkFactory(e.client(t)).CreateBatchWithFunc(cfg, func(_ context.Context, msgs []*Message) error {
		signal(started)
		<-release
		done.Add(int64(len(msgs)))
		return nil
	}, WithBatch(BatchPolicy{MaxMessages: 10, MaxWait: time.Second}))
	r := startWork(t, w)
	<-started
	go func() {
		time.Sleep(100 * time.Millisecond) // the stop has begun: Run waits for the batch
		close(release)
	}()
	require.NoError(t, r.stop(t))
	require.Equal(t, int64(n), done.Load(), "the running batch and the queued ones finished")
	require.Equal(t, map[int32]int64{0: n}, e.committed(t, group, topic))
}

// testG20BatchRebalance (G6, G16): two batch workers split a topic, join and leave; every
// message is processed, per key in order, with few duplicates, and everything is committed.
func testG20BatchRebalance(t *testing.T, protocol string) {
	e := newEnv(t)
	topic := e.newTopic(t, 8)
	const n = 20000
	e.produce(t, topic, keyed(n, 1000))
	group := uniqueTestName(t, "g")
	o := newBatchOrder(64)
	wf := NewWorkFactory(e.client(t))
	var byWorker [2]atomic.Int64
	mk := func(id string, i int) *Work {
		cfg := underProtocol(ConsumerTopicConfig{ClientID: uniqueTestName(t, id), GroupID: group, Topic: topic,
			SessionTimeoutMillis: intp(6000), MaxPollIntervalMillis: intp(10000)}, protocol)
		return wf.CreateBatchWithFunc(cfg, func(_ context.Context, msgs []*Message) error {
			o.begin(msgs)
			byWorker[i].Add(int64(len(msgs)))
			time.Sleep(time.Duration(len(msgs)) * 500 * time.Microsecond)
			o.end(msgs)
			return nil
		}, Speedup(8), MaxInFlight(500), WithBatch(BatchPolicy{MaxMessages: 64}), o.hooks())
	}
	r1 := startWork(t, mk("w1", 0))
	require.Eventually(t, func() bool { return o.count.Load() >= n/5 }, 60*time.Second, time.Millisecond)
	r2 := startWork(t, mk("w2", 1))
	require.Eventually(t, func() bool { return o.count.Load() >= n/2 }, 60*time.Second, time.Millisecond)
	require.NoError(t, r1.stop(t))
	require.Eventually(t, func() bool { return o.count.Load() == n }, 120*time.Second, 10*time.Millisecond)
	require.NoError(t, r2.stop(t))
	o.check(t)
	dupes := o.dupes.Load()
	t.Logf("%s: %d messages in %d batches (w1 %d, w2 %d), %d duplicates (%.3f%%)", protocol, n, o.batches.Load(),
		byWorker[0].Load(), byWorker[1].Load(), dupes, 100*float64(dupes)/n)
	require.Greater(t, byWorker[1].Load(), int64(n/10), "the second worker took partitions over")
	require.Less(t, dupes, int64(n/100), "duplicates stay under 1%%")
	require.Equal(t, e.endOffsets(t, topic), e.committed(t, group, topic))
}

func TestG20BatchRebalanceEager(t *testing.T)       { testG20BatchRebalance(t, protocolEager) }
func TestG20BatchRebalanceCooperative(t *testing.T) { testG20BatchRebalance(t, protocolCooperative) }
func TestG20BatchRebalanceConsumerProtocol(t *testing.T) {
	testG20BatchRebalance(t, protocolConsumer)
}

// TestG20BatchStatusShowsTheBatchInItsHandler: Work.Status shows a batch in its handler (its
// virtual partition, size, bytes, first and last offsets, how long it has run), and the
// partition's oldest message waits for the handler, in that batch.
func TestG20BatchStatusShowsTheBatchInItsHandler(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	const n = 5
	e.produce(t, topic, keyed(n, 2))
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: uniqueTestName(t, "g"), Topic: topic}
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	w := NewWorkFactory(e.client(t)).CreateBatchWithFunc(cfg, func(_ context.Context, msgs []*Message) error {
		signal(started)
		<-release
		return nil
	}, WithBatch(BatchPolicy{MaxMessages: n, MaxWait: 5 * time.Second}))
	r := startWork(t, w)
	<-started
	var st Status
	require.Eventually(t, func() bool {
		st = w.Status()
		return len(st.Partitions) == 1 && st.Partitions[0].Oldest != nil
	}, 10*time.Second, 10*time.Millisecond)
	require.Len(t, st.Batches, 1)
	b := st.Batches[0]
	require.Equal(t, 0, b.VirtualPartition)
	require.Equal(t, n, b.Messages)
	require.Equal(t, n, b.Bytes) // values "0".."4"
	require.Equal(t, MessagePosition{Topic: topic, Partition: 0, Offset: 0}, b.First)
	require.Equal(t, MessagePosition{Topic: topic, Partition: 0, Offset: n - 1}, b.Last)
	require.Greater(t, b.RunningSeconds, 0.0)
	o := st.Partitions[0].Oldest
	require.Equal(t, WaitHandler, o.WaitsFor)
	require.Contains(t, o.Detail, fmt.Sprintf("in a batch of %d (%s/0@0 to %s/0@%d)", n, topic, topic, n-1))
	page := servePage(t, StatusHandler(w), "/status", nil).Body.String()
	require.Contains(t, page, "<h2>Batches in the handler</h2>")
	require.Contains(t, page, `<td class="num size">5</td>`)
	require.Contains(t, page, fmt.Sprintf(`<td class="key last">%s/0@%d</td>`, topic, n-1))
	close(release)
	require.NoError(t, r.stop(t))
	require.Empty(t, w.Status().Batches)
	require.NotContains(t, servePage(t, StatusHandler(w), "/status", nil).Body.String(), "Batches in the handler")
}

// TestG20BatchHooksAndMetrics: the hooks keep their per-message meaning — PreProcessing for each
// message before ProcessBatch, PostProcessing for each after it with that message's own error —
// and the metrics record the batch: one messaging.process.duration with zkafka.batch true per
// call (error.type "partial" for a BatchError) and its size in zkafka.batch.messages.
func TestG20BatchHooksAndMetrics(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	const n = 4
	e.produce(t, topic, keyed(n, 4))
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	var mu sync.Mutex
	var events []string
	add := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
	meters := newMeters(t)
	w := NewWorkFactory(e.client(t), WithMeterProvider(meters.provider)).CreateBatchWithFunc(cfg, func(_ context.Context, msgs []*Message) error {
		add(fmt.Sprintf("batch %d", len(msgs)))
		return &BatchError{Failed: map[int]error{2: PermanentError(errors.New("bad row"))}}
	}, WithBatch(BatchPolicy{MaxMessages: n, MaxWait: 5 * time.Second}), WithLifecycleHooks(LifecycleHooks{
		PreProcessing: func(ctx context.Context, m LifecyclePreProcessingMeta) (context.Context, error) {
			add(fmt.Sprintf("pre %d", m.Message.Offset))
			return ctx, nil
		},
		PostProcessing: func(_ context.Context, m LifecyclePostProcessingMeta) error {
			add(fmt.Sprintf("post %d %v", m.Msg.Offset, m.ResponseErr))
			return nil
		},
	}))
	r := startWork(t, w)
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == n }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop(t))
	require.Equal(t, []string{"pre 0", "pre 1", "pre 2", "pre 3", "batch 4", "post 0 <nil>", "post 1 <nil>", "post 2 bad row", "post 3 <nil>"}, events)
	require.Equal(t, FailureCounts{Permanent: 1, Skipped: 1}, w.Status().Failures)

	got := meters.collect(t)
	require.Equal(t, uint64(1), got.count(t, "messaging.process.duration", attribute.Bool(attrBatch, true), attribute.String("error.type", "partial")))
	require.Equal(t, uint64(1), got.count(t, "messaging.process.duration"), "one measurement per call")
	h, ok := got[metricBatchSize].(metricdata.Histogram[int64])
	require.True(t, ok, "%T", got[metricBatchSize])
	require.Len(t, h.DataPoints, 1)
	require.Equal(t, uint64(1), h.DataPoints[0].Count)
	require.Equal(t, int64(n), h.DataPoints[0].Sum)
}

// TestBatchConfiguration: BatchPolicy's defaults and validation, WithBatch on a single-message
// Work, and a nil batch processor are configuration errors from Run.
func TestBatchConfiguration(t *testing.T) {
	require.Equal(t, BatchPolicy{MaxMessages: 100, MaxBytes: 1 << 20}, BatchPolicy{MaxWait: -time.Second}.withDefaults())
	require.ErrorContains(t, BatchPolicy{MaxMessages: -1, MaxBytes: 1}.validate(), "BatchPolicy.MaxMessages is -1")
	require.ErrorContains(t, BatchPolicy{MaxMessages: 1, MaxBytes: -1}.validate(), "BatchPolicy.MaxBytes is -1")
	cfg := ConsumerTopicConfig{ClientID: "c", GroupID: "g", Topic: "t"}
	wf := NewWorkFactory(NewClient(Config{BootstrapServers: []string{"127.0.0.1:1"}}))
	err := wf.CreateWithFunc(cfg, func(context.Context, *Message) error { return nil }, WithBatch(BatchPolicy{})).Run(context.Background(), nil)
	require.ErrorContains(t, err, "WithBatch is given to a Work with a single-message processor")
	err = wf.CreateBatch(cfg, nil).Run(context.Background(), nil)
	require.ErrorContains(t, err, "Work has no processor")
	err = wf.CreateBatch(cfg, batchProcessorFunc(func(context.Context, []*Message) error { return nil }), WithBatch(BatchPolicy{MaxBytes: -5})).Run(context.Background(), nil)
	require.ErrorContains(t, err, "BatchPolicy.MaxBytes is -5")
}

// TestSpreadBatchError: how ProcessBatch's error becomes each message's outcome.
func TestSpreadBatchError(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name     string
		err      error
		timedOut bool
		callIdx  []int // nil: the call got all 4
		want     []string
		whole    string
	}{
		{name: "nil", want: []string{"", "", "", ""}},
		{name: "plain", err: boom, want: []string{"boom", "boom", "boom", "boom"}, whole: "boom"},
		{name: "batch error", err: &BatchError{Failed: map[int]error{1: boom, 3: nil}}, want: []string{"", "boom", "", ""}},
		{name: "wrapped batch error", err: fmt.Errorf("bulk: %w", &BatchError{Failed: map[int]error{0: boom}}), want: []string{"boom", "", "", ""}},
		{name: "empty batch error", err: &BatchError{}, want: []string{"", "", "", ""}},
		{name: "index outside", err: &BatchError{Failed: map[int]error{4: boom}}, want: []string{"index 4", "index 4", "index 4", "index 4"}, whole: "index 4 of a batch of 4"},
		{name: "timeout", err: boom, timedOut: true, want: []string{"exceeded", "exceeded", "exceeded", "exceeded"}, whole: "exceeded"},
		{name: "timeout, nil", timedOut: true, want: []string{"exceeded", "exceeded", "exceeded", "exceeded"}, whole: "exceeded"},
		{name: "timeout answered with a batch error", err: &BatchError{Failed: map[int]error{1: boom, 2: context.Canceled}}, timedOut: true,
			want: []string{"", "exceeded ProcessTimeoutMillis (1s): boom", "context canceled", ""}},
		{name: "some left out", err: &BatchError{Failed: map[int]error{1: boom}}, callIdx: []int{0, 3}, want: []string{"", "hook", "hook", "boom"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := make([]error, 4)
			n := 4
			if tc.callIdx != nil {
				n = len(tc.callIdx)
				errs[1], errs[2] = errors.New("hook"), errors.New("hook")
			}
			whole := spreadBatchError(tc.err, tc.timedOut, time.Second, n, tc.callIdx, errs)
			for i, w := range tc.want {
				if w == "" {
					require.NoError(t, errs[i], "message %d", i)
				} else {
					require.ErrorContains(t, errs[i], w, "message %d", i)
				}
			}
			if tc.whole == "" {
				require.NoError(t, whole)
			} else {
				require.ErrorContains(t, whole, tc.whole)
			}
		})
	}
	require.True(t, strings.HasPrefix(spreadBatchError(&BatchError{Failed: map[int]error{-1: boom}}, false, 0, 2, nil, make([]error, 2)).Error(),
		"zkafka: ProcessBatch returned a BatchError for index -1 of a batch of 2"))
}

// TestBatchErrorAndVerdict: BatchError's text and unwrapping, and the breaker's one outcome
// for a batch.
func TestBatchErrorAndVerdict(t *testing.T) {
	perm := PermanentError(errors.New("bad row"))
	be := &BatchError{Failed: map[int]error{7: errors.New("timeout"), 2: perm, 5: nil}}
	require.Equal(t, "zkafka: 2 messages of the batch failed; [2]: bad row; [7]: timeout", be.Error())
	require.ErrorIs(t, be, perm)
	require.True(t, IsPermanentError(be), "errors.As looks into the failed messages")
	for _, tc := range []struct {
		v    batchVerdict
		want breakerOutcome
	}{
		{batchVerdict{ok: 3}, breakerSuccess},
		{batchVerdict{ok: 3, failed: 1}, breakerFailure},
		{batchVerdict{ok: 1, retrying: 2}, breakerSuccess},
		{batchVerdict{retrying: 2}, breakerRetrying},
		{batchVerdict{}, breakerUncounted},
	} {
		require.Equal(t, tc.want, tc.v.outcome(), "%+v", tc.v)
	}
}

// TestG20BatchNotStartedIsDroppedAtARevoke (G6, G20): a batch that waits to fill (MaxWait one
// minute) holds messages of two partitions when a second worker joins. The revoke does not
// wait for it: its messages are dropped, unstarted, for the next owners, and the rebalance ends
// long before MaxWait. Every message is then processed exactly once, each batch by one owner.
func TestG20BatchNotStartedIsDroppedAtARevoke(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 2)
	var recs []rec
	for p := range int32(2) {
		for i := range 5 {
			recs = append(recs, rec{Key: []byte(fmt.Sprintf("p%dk%d", p, i%2)), Value: []byte(fmt.Sprint(i)), Partition: p})
		}
	}
	e.produce(t, topic, recs)
	group := uniqueTestName(t, "g")
	var mu sync.Mutex
	seen := map[tpo]int{}
	var mixed []string
	mk := func(id string) *Work {
		cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, id), GroupID: group, Topic: topic,
			AdditionalProps: map[string]any{"partition.assignment.strategy": "range"}}
		return NewWorkFactory(e.client(t)).CreateBatchWithFunc(cfg, func(_ context.Context, msgs []*Message) error {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range msgs {
				seen[posOf(m)]++
				if m.Partition != msgs[0].Partition {
					mixed = append(mixed, fmt.Sprintf("%s: partitions %d and %d", id, msgs[0].Partition, m.Partition))
				}
			}
			return nil
		}, WithBatch(BatchPolicy{MaxWait: time.Minute}))
	}
	w1 := mk("w1")
	r1 := startWork(t, w1)
	// A batch of 5 is seen first when one partition's records arrive before the other's (the
	// consumer protocol assigns them apart on Apache Kafka): only the batch of 10 counts.
	require.Eventually(t, func() bool {
		n := 0
		for _, p := range w1.Status().Partitions {
			if p.Oldest != nil && p.Oldest.WaitsFor == WaitBatchFill &&
				strings.Contains(p.Oldest.Detail, "in a batch of 10 that waits for more messages (BatchPolicy.MaxWait)") {
				n++
			}
		}
		return n == 2
	}, 30*time.Second, 10*time.Millisecond, "w1's batch of both partitions, 10 messages, waits to fill")

	t0 := time.Now()
	w2 := mk("w2")
	r2 := startWork(t, w2)
	// Each has one partition, read again from its start, in a batch that waits to fill.
	filling := func(w *Work) (assigned, n int) {
		st := w.Status()
		for _, p := range st.Partitions {
			if p.Oldest != nil && p.Oldest.WaitsFor == WaitBatchFill && p.Unfinished == 5 {
				n++
			}
		}
		return len(st.Partitions), n
	}
	require.Eventually(t, func() bool {
		a1, f1 := filling(w1)
		a2, f2 := filling(w2)
		return a1 == 1 && f1 == 1 && a2 == 1 && f2 == 1
	}, 30*time.Second, 10*time.Millisecond, "one partition each, each in a batch that waits to fill")
	require.Less(t, time.Since(t0), 30*time.Second, "the revoke did not wait out MaxWait")
	mu.Lock()
	require.Empty(t, seen, "the batch that had not started was dropped, not run")
	mu.Unlock()

	require.NoError(t, r1.stop(t)) // ends the wait: its batch runs
	// w2 gets w1's partition too (eager: both revoked and assigned again, its own batch dropped
	// again) and waits to fill a batch with what is not committed: its own partition's 5.
	require.Eventually(t, func() bool {
		a, f := filling(w2)
		return a == 2 && f == 1
	}, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, r2.stop(t))
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, mixed)
	require.Len(t, seen, 10)
	for pos, n := range seen {
		require.Equal(t, 1, n, "%v ran once", pos)
	}
	require.Equal(t, map[int32]int64{0: 5, 1: 5}, e.committed(t, group, topic))
}

// TestG20BatchInFlightBoundCountsMessages (G8): the in-flight bound counts a batch's messages
// one by one: with MaxInFlight(20) and batches of up to 100, no batch holds more than 20
// messages and the Work never holds more than 20 read and unfinished.
func TestG20BatchInFlightBoundCountsMessages(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	const n, bound = 200, 20
	e.produce(t, topic, keyed(n, 7))
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	var w *Work
	var biggest, mostInFlight atomic.Int64
	w = NewWorkFactory(e.client(t)).CreateBatchWithFunc(cfg, func(_ context.Context, msgs []*Message) error {
		if int64(len(msgs)) > biggest.Load() {
			biggest.Store(int64(len(msgs)))
		}
		if f := w.Status().InFlight.Messages; f > mostInFlight.Load() {
			mostInFlight.Store(f)
		}
		time.Sleep(5 * time.Millisecond)
		return nil
	}, MaxInFlight(bound), WithBatch(BatchPolicy{MaxMessages: 100, MaxWait: 50 * time.Millisecond}))
	r := startWork(t, w)
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == n }, 30*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop(t))
	require.LessOrEqual(t, biggest.Load(), int64(bound))
	require.Greater(t, biggest.Load(), int64(1))
	require.LessOrEqual(t, mostInFlight.Load(), int64(bound))
}
