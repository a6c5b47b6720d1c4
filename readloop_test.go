package zkafka

import (
	"context"
	"runtime"
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
	client := NewClient(Config{BootstrapServers: []string{"mem:9092"}},
		WithConsumerProvider(func(map[string]any) (KafkaConsumer, error) { return c, nil }))
	defer client.Close()
	done := make(chan struct{})
	var once sync.Once
	w := NewWorkFactory(client).CreateWithFunc(ConsumerTopicConfig{ClientID: "t", GroupID: "t", Topic: "bench"},
		func(context.Context, *Message) error {
			if handler() {
				once.Do(func() { close(done) })
			}
			return nil
		}, Speedup(8))
	if made != nil {
		made(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx, nil) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("the handler never saw what it waited for")
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
