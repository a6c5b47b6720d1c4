package zkafka

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"
)

// TestDispatcherRoute: nil keys go round-robin, keys to their router's choice, and one virtual
// partition takes everything.
func TestDispatcherRoute(t *testing.T) {
	vps := []*virtualPartition{newVirtualPartition(0), newVirtualPartition(1), newVirtualPartition(2)}
	l := &readLoop{rs: &runState{vps: vps}, router: newKeyRouter(vps, 100)}
	var got []int
	for range 4 {
		got = append(got, l.route(&Message{isKeyNil: true}))
	}
	require.Equal(t, []int{1, 2, 0, 1}, got, "nil keys round-robin")

	m := &Message{Key: "k"}
	idx := l.route(m)
	require.Equal(t, routeKey("k", 3), idx, "an idle router routes by the hash")
	require.NotNil(t, m.route, "the route travels with the message")
	require.Equal(t, idx, l.route(&Message{Key: "k"}), "a key in flight stays put")

	hash := &readLoop{rs: &runState{vps: vps}} // HashRouting
	m = &Message{Key: "k"}
	require.Equal(t, routeKey("k", 3), hash.route(m))
	require.Nil(t, m.route)

	one := &readLoop{rs: &runState{vps: vps[:1]}}
	require.Equal(t, 0, one.route(&Message{Key: "k"}))
	require.Equal(t, 0, one.route(&Message{isKeyNil: true}))
}

// scriptedConsumer is a memConsumer whose polls, once it has assigned its partitions, run
// poll instead: next returns the next record.
type scriptedConsumer struct {
	*memConsumer
	poll func(timeoutMs int, next func() kafka.Event) kafka.Event
}

func (c *scriptedConsumer) Poll(timeoutMs int) kafka.Event {
	if !c.assigned {
		return c.memConsumer.Poll(timeoutMs)
	}
	return c.poll(timeoutMs, func() kafka.Event { return c.memConsumer.Poll(timeoutMs) })
}

// runScripted runs a Work with Speedup(8) over c until handler returns true, and stops it.
func runScripted(t *testing.T, c *scriptedConsumer, handler func() bool) {
	t.Helper()
	runScriptedWork(t, c, handler, nil)
}

// runScriptedWork is runScripted that shows the Work to made (unless nil) before it runs.
func runScriptedWork(t *testing.T, c *scriptedConsumer, handler func() bool, made func(*Work)) {
	t.Helper()
	runScriptedMessages(t, c, func(*Message) bool { return handler() }, made)
}

// runScriptedMessages is runScriptedWork with a handler that sees the message.
func runScriptedMessages(t *testing.T, c *scriptedConsumer, handler func(*Message) bool, made func(*Work), opts ...WorkOption) {
	t.Helper()
	client := NewClient(Config{BootstrapServers: []string{"mem:9092"}},
		WithConsumerProvider(func(map[string]any) (KafkaConsumer, error) { return c, nil }))
	defer client.Close()
	done := make(chan struct{})
	var once sync.Once
	w := NewWorkFactory(client).CreateWithFunc(ConsumerTopicConfig{ClientID: "t", GroupID: "t", Topic: "bench"},
		func(_ context.Context, m *Message) error {
			if handler(m) {
				once.Do(func() { close(done) })
			}
			return nil
		}, append([]WorkOption{Speedup(8)}, opts...)...)
	if made != nil {
		made(w)
	}
	runUntil(t, w, done, "the handler never saw what it waited for")
}

// runUntil runs w until done is closed (or fails the test with why after 10 s), and stops it.
func runUntil(t *testing.T, w *Work, done <-chan struct{}, why string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx, nil) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error(why)
	}
	cancel()
	require.NoError(t, <-errc)
}

// TestReaderWakesProcessorsDuringALongBatch: the first message of a long batch reaches its
// handler while the reader still reads the batch, not after its last message (batchWake).
func TestReaderWakesProcessorsDuringALongBatch(t *testing.T) {
	var delivered atomic.Int64
	c := &scriptedConsumer{memConsumer: newMemConsumer(8), poll: func(_ int, next func() kafka.Event) kafka.Event {
		// librdkafka always has another record ready, each taking 50 µs to come out: every
		// batch is drainBatch long and takes about 13 ms.
		for start := time.Now(); time.Since(start) < 50*time.Microsecond; {
		}
		delivered.Add(1)
		return next()
	}}
	var first atomic.Int64 // records delivered when the first handler began
	first.Store(-1)
	runScripted(t, c, func() bool {
		first.CompareAndSwap(-1, delivered.Load())
		return true
	})
	t.Logf("first handler after %d records", first.Load())
	require.Less(t, first.Load(), int64(drainBatch), "the first handler waited for its whole batch")
}

// TestReaderWakesOncePerCatchUpWakeWhileCatchingUp: while the reader catches up (librdkafka
// has more ready at the end of every batch), it wakes the processors every catchUpWake of a
// batch, not every batchWake: a processor with a fast handler parked and woke again for every
// few messages. Each record takes 15 µs to come out, so a check every batchWakeCheck records
// finds batchWake passed; the wakes of batches after the first are counted against the time
// they took.
func TestReaderWakesOncePerCatchUpWakeWhileCatchingUp(t *testing.T) {
	const batches = 6
	var delivered, wakes atomic.Int64
	var from, to atomic.Int64 // UnixNano: the first record of the second batch; the last counted
	c := &scriptedConsumer{memConsumer: newMemConsumer(8), poll: func(_ int, next func() kafka.Event) kafka.Event {
		for start := time.Now(); time.Since(start) < 15*time.Microsecond; {
		}
		if delivered.Add(1) == drainBatch+2 {
			from.Store(time.Now().UnixNano())
		}
		return next()
	}}
	testHookWoke = func() {
		if from.Load() != 0 && delivered.Load() <= batches*drainBatch {
			wakes.Add(1)
			to.Store(time.Now().UnixNano())
		}
	}
	defer func() { testHookWoke = nil }()
	runScripted(t, c, func() bool { return delivered.Load() > batches*drainBatch })
	took := time.Duration(to.Load() - from.Load())
	// One wake per catchUpWake, and the one at each batch's end with the check that follows.
	limit := int64(took/catchUpWake) + 2*batches + 2
	t.Logf("%d wakes in %s of catching up (limit %d)", wakes.Load(), took, limit)
	require.LessOrEqual(t, wakes.Load(), limit)
}

// TestReaderWakesLessInADeepCatchUp: once the reader has caught up on deepBacklog messages in
// a row, its batches are deepDrainBatch long and it wakes the processors every
// deepCatchUpWake, not every catchUpWake. Each record takes 15 µs to come out; the wakes of
// records 4,000 to 8,000, all in deep batches, are counted against the time they took. With
// catchUpWake and drainBatch it would be about four times the limit.
func TestReaderWakesLessInADeepCatchUp(t *testing.T) {
	const from, to = 4000, 8000
	var delivered, wakes atomic.Int64
	var start, end atomic.Int64 // UnixNano: record from; the last wake counted
	c := &scriptedConsumer{memConsumer: newMemConsumer(8), poll: func(_ int, next func() kafka.Event) kafka.Event {
		for start := time.Now(); time.Since(start) < 15*time.Microsecond; {
		}
		if delivered.Add(1) == from {
			start.Store(time.Now().UnixNano())
		}
		return next()
	}}
	testHookWoke = func() {
		if n := delivered.Load(); n > from && n <= to {
			wakes.Add(1)
			end.Store(time.Now().UnixNano())
		}
	}
	defer func() { testHookWoke = nil }()
	runScripted(t, c, func() bool { return delivered.Load() > to })
	took := time.Duration(end.Load() - start.Load())
	// One wake per deepCatchUpWake, and the one at each batch's end with the check that
	// follows (a batch may end early at the in-flight bound: the bound is far off here).
	batches := int64((to-from)/(deepDrainBatch+1) + 2)
	limit := int64(took/deepCatchUpWake) + 2*batches + 2
	t.Logf("%d wakes in %s of a deep catch-up (limit %d)", wakes.Load(), took, limit)
	require.LessOrEqual(t, wakes.Load(), limit)
	require.Positive(t, wakes.Load(), "no wake counted")
}

// TestSlowProcessorWokenAtEveryHandOverInADeepCatchUp: in a deep catch-up the reader wakes
// the processors only every deepCatchUpWake, but a processor whose handler ran eagerAfter or
// longer is woken at every hand-over (virtualPartition.eager): a record of a slow key does not
// wait in its queue for the next deep wake. Each record takes 15 µs to come out; one every
// 2 ms has the key "slow", whose handler runs 1.2 ms (its processor parks between two, within
// eagerFor of the last). The wait from a slow record's read to its handler's start, past
// deepBacklog, is measured with the eager wake and without it (testNoEagerWake), alternately:
// without it, it is about half of deepCatchUpWake at the median.
func TestSlowProcessorWokenAtEveryHandOverInADeepCatchUp(t *testing.T) {
	if raceEnabled {
		// Measured: the race detector's slowdown keeps the woken processor from a core for
		// about as long with the eager wake as without (medians 1.0-1.6 ms both).
		t.Skip("how soon a woken processor runs is not measurable under -race")
	}
	defer func() { testNoEagerWake = false }()
	var with, without []time.Duration
	for range 2 {
		testNoEagerWake = false
		with = append(with, slowRecordWaits(t)...)
		testNoEagerWake = true
		without = append(without, slowRecordWaits(t)...)
	}
	slices.Sort(with)
	slices.Sort(without)
	withMedian, withoutMedian := with[len(with)/2], without[len(without)/2]
	t.Logf("waits of slow records in a deep catch-up: median %s with the eager wake, %s without\nwith: %v\nwithout: %v",
		withMedian, withoutMedian, with, without)
	require.Less(t, withMedian*2, withoutMedian, "a slow key's records waited for the deep catch-up's wakes")
}

// slowRecordWaits runs TestSlowProcessorWokenAtEveryHandOverInADeepCatchUp's Work once and
// returns the waits of its slow records.
func slowRecordWaits(t *testing.T) []time.Duration {
	const every, from, slowOnes = 2 * time.Millisecond, 2 * deepBacklog, 12
	var lastSlow time.Time // the reader's
	c := &scriptedConsumer{memConsumer: newMemConsumer(8), poll: func(_ int, next func() kafka.Event) kafka.Event {
		for start := time.Now(); time.Since(start) < 15*time.Microsecond; {
		}
		ev := next()
		if now := time.Now(); now.Sub(lastSlow) >= every {
			lastSlow = now
			ev.(*kafka.Message).Key = []byte("slow")
		}
		return ev
	}}
	var mu sync.Mutex
	var waits []time.Duration
	runScriptedMessages(t, c, func(m *Message) bool {
		if m.Key != "slow" || m.Offset*8 < from {
			return false
		}
		wait := time.Since(m.TimeStamp)
		for start := time.Now(); time.Since(start) < 1200*time.Microsecond; {
		}
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, wait)
		return len(waits) == slowOnes
	}, nil, HashRouting()) // the slow key keeps its virtual partition (least-loaded routing moves it when idle)
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(waits)
}

// TestHandOverWakesEagerProcessors: a hand-over wakes the processors that asked for it
// (virtualPartition.eager) and leaves the others to the reader's wakes (wakeQueued).
func TestHandOverWakesEagerProcessors(t *testing.T) {
	vps := []*virtualPartition{newVirtualPartition(0), newVirtualPartition(1)}
	l := &readLoop{rs: &runState{vps: vps, bound: newInFlight(100, 1<<20)}, dispatched: make([][]*Message, len(vps))}
	vps[0].eager.Store(true)
	for _, vp := range vps {
		l.dispatched[vp.idx] = append(l.dispatched[vp.idx], &Message{Offset: int64(vp.idx)})
		l.toWake = append(l.toWake, vp)
	}
	l.handOver()
	require.Len(t, vps[0].wake, 1, "an eager processor is woken at the hand-over")
	require.Empty(t, vps[1].wake, "a processor that did not ask waits for the reader's wake")
	for _, vp := range vps {
		m, _, ok, _ := vp.next()
		require.True(t, ok, "the hand-over queued virtual partition %d's message", vp.idx)
		require.Equal(t, int64(vp.idx), m.Offset)
	}
}

// TestBatchFillMakesItsProcessorEager: while a batch waits to fill (MaxWait), its processor
// is eager, so that what the reader hands over joins the batch at once; once the batch stops
// waiting, the processor is as eager as before.
func TestBatchFillMakesItsProcessorEager(t *testing.T) {
	var delivered atomic.Int64
	c := &scriptedConsumer{memConsumer: newMemConsumer(1), poll: func(timeoutMs int, next func() kafka.Event) kafka.Event {
		if delivered.Add(1) == 1 {
			return next()
		}
		time.Sleep(time.Duration(min(timeoutMs, 10)) * time.Millisecond) // nothing more to read
		return nil
	}}
	client := NewClient(Config{BootstrapServers: []string{"mem:9092"}},
		WithConsumerProvider(func(map[string]any) (KafkaConsumer, error) { return c, nil }))
	defer client.Close()
	w := NewWorkFactory(client).CreateBatchWithFunc(ConsumerTopicConfig{ClientID: "t", GroupID: "t", Topic: "bench"},
		func(context.Context, []*Message) error { return nil },
		Speedup(2), WithBatch(BatchPolicy{MaxMessages: 10, MaxWait: time.Minute}))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx, nil) }()
	var filling *virtualPartition
	require.Eventually(t, func() bool {
		rs := w.run.Load()
		if rs == nil {
			return false
		}
		for _, vp := range rs.vps {
			if b := vp.batch.Load(); b != nil && b.fillUntil.Load() != 0 && vp.eager.Load() {
				filling = vp
				return true
			}
		}
		return false
	}, 10*time.Second, time.Millisecond, "no batch was seen waiting to fill with its processor eager")
	cancel()
	require.NoError(t, <-errc)
	require.False(t, filling.eager.Load(), "after the fill the processor is as eager as before it")
}

// TestBatchFillWokenAtEveryHandOverInADeepCatchUp: a batch that waits to fill (MaxWait) is
// woken at every hand-over, not at the deep catch-up's wakes (virtualPartition.eager), which
// come less often than MaxWait here. Each record takes 15 µs to come out; inside the reader's
// polls, past deepBacklog, the test looks for a batch waiting to fill while a message handed
// over to its queue 500 µs or more ago waits there too. It measures with the eager wake and
// without it (testNoEagerWake), alternately. It is a measurement of what the wake buys, not run
// under -race: how soon a woken processor gets a core depends on the machine's load, and under
// the race detector on a loaded machine it got none sooner than the deep wakes came (with the
// eager wake 34-74 % of the looks, without it 73-76 %, three busy loops beside the tests).
// TestHandOverWakesEagerProcessors and TestBatchFillMakesItsProcessorEager check the mechanism.
func TestBatchFillWokenAtEveryHandOverInADeepCatchUp(t *testing.T) {
	if raceEnabled {
		t.Skip("how soon a woken processor runs is not measurable under -race on a loaded machine")
	}
	defer func() { testNoEagerWake = false }()
	var with, without [2]int64 // looks at a filling batch, and those with a stale message
	for range 2 {
		testNoEagerWake = false
		filling, stale := batchFillLooks(t)
		with[0], with[1] = with[0]+filling, with[1]+stale
		testNoEagerWake = true
		filling, stale = batchFillLooks(t)
		without[0], without[1] = without[0]+filling, without[1]+stale
	}
	t.Logf("looks at a filling batch with a message handed over 500 µs ago or more: %d of %d with the eager wake, %d of %d without",
		with[1], with[0], without[1], without[0])
	require.Positive(t, with[0], "no batch was seen filling")
	require.Positive(t, without[0], "no batch was seen filling without the eager wake")
	// Measured: 0-12 % with the eager wake and 72-75 % without it; under -race on an idle
	// machine 5-14 % and 70-75 %.
	withShare, withoutShare := float64(with[1])/float64(with[0]), float64(without[1])/float64(without[0])
	require.Less(t, withShare, 0.75*withoutShare, "filling batches waited for the deep catch-up's wakes")
}

// batchFillLooks runs TestBatchFillWokenAtEveryHandOverInADeepCatchUp's Work once and returns
// how often it found a batch filling, and how often one with a stale message in its queue.
func batchFillLooks(t *testing.T) (filling, stale int64) {
	const from, to = 2 * deepBacklog, 2*deepBacklog + 3000
	var w *Work
	var delivered, fills, stales atomic.Int64
	c := &scriptedConsumer{memConsumer: newMemConsumer(8), poll: func(_ int, next func() kafka.Event) kafka.Event {
		for start := time.Now(); time.Since(start) < 15*time.Microsecond; {
		}
		if n := delivered.Add(1); n > from && n <= to && n%4 == 0 {
			// On the reader goroutine, inside its poll.
			if rs := w.run.Load(); rs != nil {
				old := time.Now().Add(-500 * time.Microsecond)
				for _, vp := range rs.vps {
					b := vp.batch.Load()
					if b == nil || b.fillUntil.Load() == 0 {
						continue
					}
					fills.Add(1)
					vp.mu.Lock()
					if vp.n > 0 && vp.q[vp.head].TimeStamp.Before(old) {
						stales.Add(1)
					}
					vp.mu.Unlock()
				}
			}
		}
		return next()
	}}
	client := NewClient(Config{BootstrapServers: []string{"mem:9092"}},
		WithConsumerProvider(func(map[string]any) (KafkaConsumer, error) { return c, nil }))
	defer client.Close()
	done := make(chan struct{})
	var once sync.Once
	w = NewWorkFactory(client).CreateBatchWithFunc(ConsumerTopicConfig{ClientID: "t", GroupID: "t", Topic: "bench"},
		func(context.Context, []*Message) error {
			if delivered.Load() > to {
				once.Do(func() { close(done) })
			}
			return nil
		}, Speedup(8), WithBatch(BatchPolicy{MaxMessages: 1000, MaxWait: 3 * time.Millisecond}))
	runUntil(t, w, done, "the records never all came out")
	return fills.Load(), stales.Load()
}

// TestReaderHandsOverBetweenCatchUpWakes: while the reader catches up it wakes the processors
// only every catchUpWake, but it hands what it dispatched over to their queues every
// batchWake, where a processor that runs takes it without a wake. Each record takes 15 µs
// to come out (its timestamp is when it did); 24 records after a wake (360 µs, past
// batchWake and short of catchUpWake), some of those read since the wake are in a queue or
// were taken from one.
func TestReaderHandsOverBetweenCatchUpWakes(t *testing.T) {
	const batches = 6
	var w *Work
	var delivered, atWake atomic.Int64 // records delivered; delivered at the last wake
	var wokeAt, taken atomic.Int64     // UnixNano of the last wake; records read since it and taken
	var checks, empty atomic.Int64
	since := func(m *Message) bool { return m.TimeStamp.UnixNano() > wokeAt.Load() }
	c := &scriptedConsumer{memConsumer: newMemConsumer(8), poll: func(_ int, next func() kafka.Event) kafka.Event {
		for start := time.Now(); time.Since(start) < 15*time.Microsecond; {
		}
		n := delivered.Add(1)
		if n > drainBatch && n <= batches*drainBatch && n-atWake.Load() == 24 {
			// On the reader goroutine, inside its poll: where those read since the wake are.
			queued := 0
			if rs := w.run.Load(); rs != nil {
				for _, vp := range rs.vps {
					vp.mu.Lock()
					for i := 0; i < vp.n; i++ {
						if since(vp.q[(vp.head+i)&(len(vp.q)-1)]) {
							queued++
						}
					}
					vp.mu.Unlock()
				}
			}
			checks.Add(1)
			if queued == 0 && taken.Load() == 0 {
				empty.Add(1)
			}
		}
		return next()
	}}
	testHookWoke = func() {
		atWake.Store(delivered.Load())
		taken.Store(0)
		wokeAt.Store(time.Now().UnixNano())
	}
	testHookPopped = func(m *Message) {
		if since(m) {
			taken.Add(1)
		}
	}
	defer func() { testHookWoke, testHookPopped = nil, nil }()
	runScriptedWork(t, c, func() bool { return delivered.Load() > batches*drainBatch }, func(made *Work) { w = made })
	t.Logf("%d checks, %d found nothing handed over", checks.Load(), empty.Load())
	require.Positive(t, checks.Load(), "no catch-up wake was 24 records apart from the next")
	require.Zero(t, empty.Load(), "what was read since a catch-up wake waited for the next wake")
}

// TestReaderLetsWokenProcessorsRunBeforeAWaitingPoll: when the queue runs dry, the reader
// lets the processors it woke run before it polls again. A poll that waits is a cgo call that
// keeps the reader's P; on one P a woken processor would wait for it (yieldBeforePoll).
func TestReaderLetsWokenProcessorsRunBeforeAWaitingPoll(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const rounds = 20
	var handled, polled atomic.Int64 // records handled; records delivered
	var late atomic.Int64            // waiting polls that began before the last record's handler
	c := &scriptedConsumer{memConsumer: newMemConsumer(1), poll: func(timeoutMs int, next func() kafka.Event) kafka.Event {
		if timeoutMs == 0 {
			return nil // the queue is empty: the batch ends
		}
		if n := polled.Load(); n > 0 && n <= rounds && handled.Load() < n {
			late.Add(1) // a poll that waits, and the processor woken for the last record has not run
			for handled.Load() < n {
				time.Sleep(time.Millisecond)
			}
		}
		if polled.Load() < rounds {
			polled.Add(1)
			return next() // one record per batch
		}
		time.Sleep(time.Millisecond)
		return nil
	}}
	runScripted(t, c, func() bool { return handled.Add(1) == rounds })
	// The runtime's scheduler looks at its global queue, where the yield puts the reader,
	// before its local one once in 61 schedules, twice in a row far more rarely.
	require.LessOrEqual(t, late.Load(), int64(1), "of %d waiting polls, %d began before the processor woken for the last record ran", rounds, late.Load())
}

// orderedConsumer records, on a memConsumer, whether a commit with a finished offset came
// before the first Pause.
type orderedConsumer struct {
	*memConsumer
	paused         atomic.Bool
	committedFirst atomic.Bool // a commit moved an offset before any Pause
}

func (c *orderedConsumer) CommitOffsets(o []kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	for _, tp := range o {
		if tp.Offset > 0 && !c.paused.Load() {
			c.committedFirst.Store(true)
		}
	}
	return c.memConsumer.CommitOffsets(o)
}

func (c *orderedConsumer) Pause(p []kafka.TopicPartition) error {
	c.paused.Store(true)
	return c.memConsumer.Pause(p)
}

// TestReaderCommitsWhileItWaitsForRoom: at a full in-flight bound the reader waits up to
// softWait for room before it pauses; a burst of messages finished meanwhile is committed
// during that wait (waitForRoom), not after it. The first 300 messages finish at once, the
// rest never: the bound of 5,000 never has a tenth free, and the commit of the 300 (more
// than commitBurst) must come before the reader pauses. Without the commits in the wait the
// reader paused first, then committed.
func TestReaderCommitsWhileItWaitsForRoom(t *testing.T) {
	c := &orderedConsumer{memConsumer: newMemConsumer(1)}
	client := NewClient(Config{BootstrapServers: []string{"mem:9092"}},
		WithConsumerProvider(func(map[string]any) (KafkaConsumer, error) { return c, nil }))
	defer client.Close()
	release := make(chan struct{})
	var started atomic.Int64
	w := NewWorkFactory(client).CreateWithFunc(ConsumerTopicConfig{ClientID: "t", GroupID: "t", Topic: "bench", AutoCommitIntervalMs: intp(60000)},
		func(ctx context.Context, _ *Message) error {
			if started.Add(1) <= 300 {
				return nil
			}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}, Speedup(1), MaxInFlight(5000))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx, nil) }()
	require.Eventually(t, c.paused.Load, 30*time.Second, time.Millisecond, "the reader pauses at the bound")
	require.True(t, c.committedFirst.Load(), "the finished messages were committed only after the reader paused")
	close(release)
	cancel()
	require.NoError(t, <-errc)
}
