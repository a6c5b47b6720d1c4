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
)

// timeline records when each message of a test was read (PostRead) and finished (OnDone).
type timeline struct {
	mu   sync.Mutex
	read map[int64]time.Time
	done map[int64]time.Time
	errs map[int64]error
}

func newTimeline() *timeline {
	return &timeline{read: map[int64]time.Time{}, done: map[int64]time.Time{}, errs: map[int64]error{}}
}

func (tl *timeline) options() []WorkOption {
	return []WorkOption{
		WithLifecycleHooks(LifecycleHooks{PostRead: func(ctx context.Context, m LifecyclePostReadMeta) (context.Context, error) {
			tl.mu.Lock()
			tl.read[m.Message.Offset] = time.Now()
			tl.mu.Unlock()
			return ctx, nil
		}}),
		WithOnDone(func(_ context.Context, m *Message, err error) {
			tl.mu.Lock()
			tl.done[m.Offset] = time.Now()
			tl.errs[m.Offset] = err
			tl.mu.Unlock()
		}),
	}
}

func (tl *timeline) finished() int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return len(tl.done)
}

// TestG17MalformedMessagesNeverOpenTheBreaker: ten undecodable messages, then a hundred good
// ones, with the default breaker (5 failures open it for 30 s) and a dead letter topic. The
// malformed ones are dead-lettered with their zkafka-* headers, the breaker never opens, and
// every good message finishes within 2 s of being read.
func TestG17MalformedMessagesNeverOpenTheBreaker(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	dlt := e.newTopic(t, 1)
	const bad, good = 10, 100
	var recs []rec
	for i := 0; i < bad; i++ {
		recs = append(recs, rec{Key: []byte(fmt.Sprintf("k%d", i%3)), Value: []byte(fmt.Sprintf("{not json %d", i))})
	}
	for i := 0; i < good; i++ {
		recs = append(recs, rec{Key: []byte(fmt.Sprintf("k%d", i%3)), Value: []byte(fmt.Sprintf(`{"n":%d}`, bad+i))})
	}
	e.produce(t, topic, recs)

	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic, Formatter: JSONFmt}
	var breakerMoved atomic.Int64
	tl := newTimeline()
	opts := append(tl.options(), WithDeadLetterTopic(ProducerTopicConfig{Topic: dlt}),
		WithLifecycleHooks(LifecycleHooks{CircuitBreakerStateChanged: func(context.Context, LifecycleCircuitBreakerStateChanged) {
			breakerMoved.Add(1)
		}}))
	w := NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(_ context.Context, m *Message) error {
		var v struct{ N int }
		if err := m.Decode(&v); err != nil {
			return fmt.Errorf("decode: %w", err) // as a new user writes it: no marking needed
		}
		return nil
	}, opts...)
	r := startWork(t, w)
	require.Eventually(t, func() bool { return tl.finished() == bad+good }, 60*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == bad+good }, 30*time.Second, 50*time.Millisecond)
	require.NoError(t, r.stop(t))

	require.Zero(t, breakerMoved.Load(), "the breaker never changed state")
	tl.mu.Lock()
	for off := int64(bad); off < bad+good; off++ {
		took := tl.done[off].Sub(tl.read[off])
		require.Less(t, took, 2*time.Second, "offset %d finished %s after it was read", off, took)
		require.NoError(t, tl.errs[off])
	}
	for off := int64(0); off < bad; off++ {
		require.True(t, IsPermanentError(tl.errs[off]), "offset %d: %v", off, tl.errs[off])
	}
	tl.mu.Unlock()
	require.Equal(t, FailureCounts{Permanent: bad, DeadLettered: bad}, w.Status().Failures)

	src := e.consumeFrom(t, topic, bad+good)
	dead := e.consumeAll(t, dlt, bad)
	var offsets []int64
	for _, d := range dead {
		for _, h := range zkafkaHeaders {
			require.Contains(t, d.Headers, h)
		}
		o := originalOf(t, d)
		offsets = append(offsets, o.offset)
		require.Equal(t, src[o].Value, d.Value)
		require.Equal(t, src[o].Key, d.Key)
		require.Equal(t, "1", string(d.Headers[HeaderAttempt]))
		require.Contains(t, string(d.Headers[HeaderError]), "decode: ")
	}
	require.ElementsMatch(t, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, offsets)
}

// TestG17PermanentErrorsWithoutADeadLetterTopicAreSkipped: with no dead letter topic, a
// permanent failure is skipped (finished, counted, logged: the first at once, the rest in a
// summary) and never opens the breaker; transient ones still do.
func TestG17PermanentErrorsWithoutADeadLetterTopicAreSkipped(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, keyed(20, 4))
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	var breakerMoved atomic.Int64
	logs := newCaptureLogger()
	c := NewClient(Config{BootstrapServers: []string{e.addr}})
	t.Cleanup(func() { _ = c.Close() })
	w := NewWorkFactory(c, WithLogger(logs)).CreateWithFunc(cfg, func(_ context.Context, m *Message) error {
		switch {
		case m.Offset < 10:
			return PermanentError(errors.New("order has no customer"))
		case m.Offset < 15:
			panic("bad order")
		}
		return nil
	}, CircuitBreakAfter(2), WithRetry(RetryPolicy{InitialBackoff: time.Millisecond}),
		WithLifecycleHooks(LifecycleHooks{CircuitBreakerStateChanged: func(context.Context, LifecycleCircuitBreakerStateChanged) {
			breakerMoved.Add(1)
		}}))
	r := startWork(t, w)
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == 20 }, 60*time.Second, 20*time.Millisecond)
	require.NoError(t, r.stop(t))
	require.Zero(t, breakerMoved.Load())
	require.Equal(t, FailureCounts{Permanent: 15, Skipped: 15}, w.Status().Failures, "nothing retried")
	skipped := logs.containing("skipping the message")
	// Errors and panics are two kinds: the first of each at once (the panic with its stack),
	// the others in one summary each (at the stop), not a line each.
	require.Len(t, skipped, 4, "%q", skipped)
	require.Contains(t, skipped[0], "offset 0 |")
	require.NotContains(t, skipped[0], "repeated")
	require.Contains(t, skipped[1], "offset 10 |")
	require.Contains(t, skipped[1], "runtime/debug.Stack")
	var summaries []string
	for _, l := range skipped[2:] {
		summaries = append(summaries, l[strings.Index(l, " offset "):strings.Index(l, " class ")]+l[strings.Index(l, " repeated "):strings.Index(l, " last ")])
	}
	require.ElementsMatch(t, []string{
		" offset | offset | \"offset\" | offset | offset 9 | 9 | 9 | %!s(int64=9) | 9 repeated | repeated | \"repeated\" | repeated | repeated 9 | 9 | 9 | %!s(int=9) | 9",
		" offset | offset | \"offset\" | offset | offset 14 | 14 | 14 | %!s(int64=14) | 14 repeated | repeated | \"repeated\" | repeated | repeated 4 | 4 | 4 | %!s(int=4) | 4",
	}, summaries, "each summary carries its count and the last one's fields")
}

// attemptLog records each run of the processor: key, offset and attempt, in order.
type attemptLog struct {
	mu   sync.Mutex
	runs []string
	ran  chan struct{} // signalled (capacity 1) at every run
}

func newAttemptLog() *attemptLog { return &attemptLog{ran: make(chan struct{}, 1)} }

func (a *attemptLog) add(m *Message) {
	a.mu.Lock()
	a.runs = append(a.runs, fmt.Sprintf("%s@%d#%d", m.Key, m.Offset, m.Attempt()))
	a.mu.Unlock()
	signal(a.ran)
}

func (a *attemptLog) all() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.runs...)
}

// waitFor waits until the run s has happened.
func (a *attemptLog) waitFor(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		for _, got := range a.all() {
			if got == s {
				return
			}
		}
		select {
		case <-a.ran:
		case <-deadline:
			t.Fatalf("%s did not run within %s; runs: %v", s, within, a.all())
		}
	}
}

// TestRetryKeepsKeyOrderWhileOtherKeysFlow: on one virtual partition, a message of key a
// fails twice and then passes; the later messages of a wait behind it, in order, while the
// messages of the other keys all finish during its first backoff. Its partition's commit
// holds at it meanwhile.
func TestRetryKeepsKeyOrderWhileOtherKeysFlow(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	keys := []string{"a", "b", "a", "c", "b", "a", "c", "d"}
	var recs []rec
	for i, k := range keys {
		recs = append(recs, rec{Key: []byte(k), Value: []byte(strconv.Itoa(i))})
	}
	e.produce(t, topic, recs)
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic, AutoCommitIntervalMs: intp(50)}
	runs := newAttemptLog()
	tl := newTimeline()
	const backoff = time.Second
	w := NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(_ context.Context, m *Message) error {
		runs.add(m)
		if m.Offset == 0 && m.Attempt() < 3 {
			return errors.New("dependency down")
		}
		return nil
	}, append(tl.options(), Speedup(1), WithRetry(RetryPolicy{MaxAttempts: 3, InitialBackoff: backoff, MaxBackoff: backoff}))...)
	r := startWork(t, w)

	runs.waitFor(t, "a@0#2", 30*time.Second)
	// The first backoff is over: every message of the other keys finished during it, and the
	// commit could not pass offset 0.
	tl.mu.Lock()
	var slowest time.Duration
	for i, k := range keys {
		if k != "a" {
			require.Contains(t, tl.done, int64(i), "%s@%d finished during a@0's backoff", k, i)
			took := tl.done[int64(i)].Sub(tl.read[int64(i)])
			require.Less(t, took, backoff/2, "%s@%d took %s: held up by a@0's backoff", k, i, took)
			slowest = max(slowest, took)
		}
	}
	tl.mu.Unlock()
	t.Logf("the other keys took at most %s from read to finished", slowest)
	requireNothingCommittedPast(t, e.committed(t, group, topic), 0, "nothing is committed past offset 0 while it waits (offsets 1.. are finished)")

	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == int64(len(keys)) }, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, r.stop(t))
	var aRuns []string
	for _, s := range runs.all() {
		if s[0] == 'a' {
			aRuns = append(aRuns, s)
		}
	}
	require.Equal(t, []string{"a@0#1", "a@0#2", "a@0#3", "a@2#1", "a@5#1"}, aRuns, "key a in order, one run at a time")
	require.Equal(t, FailureCounts{Retried: 2}, w.Status().Failures)
	require.Len(t, runs.all(), len(keys)+2)
}

// TestRetryLastFailureIsDeadLetteredWithItsAttempts: a message that fails every attempt goes to
// the dead letter topic once, after its last attempt, with zkafka-attempt = the attempts made.
// The breaker counts it once: with CircuitBreakAfter(2), one such message does not open it.
func TestRetryLastFailureIsDeadLetteredWithItsAttempts(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	dlt := e.newTopic(t, 1)
	e.produce(t, topic, []rec{{Key: []byte("a"), Value: []byte("0")}, {Key: []byte("a"), Value: []byte("1")}})
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	runs := newAttemptLog()
	var breakerMoved atomic.Int64
	w := NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(_ context.Context, m *Message) error {
		runs.add(m)
		if m.Offset == 0 {
			return fmt.Errorf("attempt %d failed", m.Attempt())
		}
		return nil
	}, WithRetry(RetryPolicy{MaxAttempts: 4, InitialBackoff: 5 * time.Millisecond, Jitter: 0.5}), CircuitBreakAfter(2),
		WithDeadLetterTopic(ProducerTopicConfig{Topic: dlt}),
		WithLifecycleHooks(LifecycleHooks{CircuitBreakerStateChanged: func(context.Context, LifecycleCircuitBreakerStateChanged) {
			breakerMoved.Add(1)
		}}))
	r := startWork(t, w)
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[0] == 2 }, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, r.stop(t))
	require.Equal(t, []string{"a@0#1", "a@0#2", "a@0#3", "a@0#4", "a@1#1"}, runs.all())
	require.Zero(t, breakerMoved.Load(), "one message counts once")
	dead := e.consumeAll(t, dlt, 1)
	require.Equal(t, "4", string(dead[0].Headers[HeaderAttempt]))
	require.Equal(t, "attempt 4 failed", string(dead[0].Headers[HeaderError]))
	require.Equal(t, FailureCounts{Retried: 3, DeadLettered: 1}, w.Status().Failures)
}

// TestRetryStopDuringBackoff: a stop, graceful or abrupt, while a message waits for its retry
// returns at once, without waiting out the backoff, and does not commit the waiting message.
func TestRetryStopDuringBackoff(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		t.Run(map[bool]string{true: "graceful", false: "abrupt"}[graceful], func(t *testing.T) {
			testRetryStopDuringBackoff(t, graceful)
		})
	}
}

func testRetryStopDuringBackoff(t *testing.T, graceful bool) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	dlt := e.newTopic(t, 1)
	e.produce(t, topic, []rec{{Key: []byte("b"), Value: []byte("0")}, {Key: []byte("a"), Value: []byte("1")},
		{Key: []byte("a"), Value: []byte("2")}, {Key: []byte("c"), Value: []byte("3")}})
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic, AutoCommitIntervalMs: intp(50)}
	runs := newAttemptLog()
	w := NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(_ context.Context, m *Message) error {
		runs.add(m)
		if m.Offset == 1 {
			return errors.New("dependency down")
		}
		return nil
	}, WithRetry(RetryPolicy{InitialBackoff: time.Minute}), WithDeadLetterTopic(ProducerTopicConfig{Topic: dlt}))
	r := startWork(t, w)
	runs.waitFor(t, "a@1#1", 30*time.Second)
	runs.waitFor(t, "c@3#1", 30*time.Second)
	start := time.Now()
	if graceful {
		require.NoError(t, r.stop(t))
	} else {
		r.cancel()
		select {
		case <-r.done:
			require.NoError(t, r.err)
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return within 5 s of the cancel")
		}
	}
	require.Less(t, time.Since(start), 5*time.Second, "the stop does not wait out the backoff")
	committed := e.committed(t, group, topic)
	if graceful {
		require.Equal(t, map[int32]int64{0: 1}, committed, "committed up to the waiting message, not past it")
	} else {
		require.LessOrEqual(t, committed[0], int64(1), "not committed past the waiting message")
	}
	require.Equal(t, map[int32]int64{0: 0}, e.endOffsets(t, dlt), "not dead-lettered")
	require.Equal(t, []string{"b@0#1", "a@1#1", "c@3#1"}, runs.all(), "a@2 waited behind a@1 and was let go with it")
}

// TestRetryRevokeDuringBackoffRedelivers: a worker whose messages wait for their retries loses
// a partition to a worker joining the group; the new owner reads the waiting message again and
// processes it, while the first worker never retries it; under each rebalance protocol.
func TestRetryRevokeDuringBackoffRedelivers(t *testing.T) {
	eachProtocol(t, testRetryRevokeDuringBackoff)
}

func testRetryRevokeDuringBackoff(t *testing.T, protocol string) {
	e := newEnv(t)
	topic := e.newTopic(t, 2)
	e.produce(t, topic, []rec{{Key: []byte("a"), Value: []byte("x"), Partition: 0}, {Key: []byte("b"), Value: []byte("y"), Partition: 1}})
	group := uniqueTestName(t, "g")
	mk := func(l Logger, runs *attemptLog, fail bool) *Work {
		cfg := underProtocol(ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic,
			SessionTimeoutMillis: intp(6000), MaxPollIntervalMillis: intp(10000), AutoCommitIntervalMs: intp(100)}, protocol)
		c := NewClient(Config{BootstrapServers: []string{e.addr}}, LoggerOption(l))
		t.Cleanup(func() { _ = c.Close() })
		return NewWorkFactory(c).CreateWithFunc(cfg, func(_ context.Context, m *Message) error {
			runs.add(m)
			if fail {
				return errors.New("dependency down")
			}
			return nil
		}, WithRetry(RetryPolicy{InitialBackoff: time.Minute}))
	}
	firstRuns, secondRuns := newAttemptLog(), newAttemptLog()
	first := revokeLogger{revoked: make(chan struct{}, 1)}
	r1 := startWork(t, mk(first, firstRuns, true))
	firstRuns.waitFor(t, "a@0#1", 60*time.Second)
	firstRuns.waitFor(t, "b@0#1", 60*time.Second)
	r2 := startWork(t, mk(NoopLogger{}, secondRuns, false)) // the group splits the partitions
	select {
	case <-first.revoked:
	case <-time.After(60 * time.Second):
		t.Fatal("the first worker's partitions were never revoked")
	}
	// Each worker owns one partition now: the second processes its waiting message.
	require.Eventually(t, func() bool { return len(secondRuns.all()) == 1 }, 60*time.Second, 10*time.Millisecond)
	moved := secondRuns.all()[0]
	p := int32(0)
	if moved == "b@0#1" {
		p = 1
	}
	require.Eventually(t, func() bool { return e.committed(t, group, topic)[p] == 1 }, 30*time.Second, 20*time.Millisecond,
		"the new owner commits the message the first worker was waiting to retry")
	require.NoError(t, r1.stop(t))
	require.NoError(t, r2.stop(t))
	for _, s := range firstRuns.all() {
		require.Regexp(t, `#1$`, s, "the first worker never retried: the revoke and the stop let the waiting messages go")
	}
}

// TestRetryBreakerCountsEachMessageOnce: with CircuitBreakAfter(3) and three attempts per
// message, the breaker opens when the third message's last attempt fails, not after three
// failed runs.
func TestRetryBreakerCountsEachMessageOnce(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, []rec{{Key: []byte("a"), Value: []byte("0")}, {Key: []byte("b"), Value: []byte("1")},
		{Key: []byte("c"), Value: []byte("2")}, {Key: []byte("d"), Value: []byte("3")}})
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: uniqueTestName(t, "g"), Topic: topic}
	runs := newAttemptLog()
	opened := make(chan int, 1) // the runs made when the breaker opened
	w := NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(_ context.Context, m *Message) error {
		runs.add(m)
		return errors.New("dependency down")
	}, WithRetry(RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond}), CircuitBreakAfter(3), CircuitBreakFor(time.Minute),
		WithLifecycleHooks(LifecycleHooks{CircuitBreakerStateChanged: func(_ context.Context, c LifecycleCircuitBreakerStateChanged) {
			if c.To == CircuitBreakerStateOpen {
				select {
				case opened <- len(runs.all()):
				default:
				}
			}
		}}))
	r := startWork(t, w)
	select {
	case n := <-opened:
		require.GreaterOrEqual(t, n, 9, "three messages ran three times each before the breaker opened: %v", runs.all())
	case <-time.After(30 * time.Second):
		t.Fatalf("the breaker never opened; runs: %v", runs.all())
	}
	require.NoError(t, r.stop(t))
	counted := map[string]int{}
	for _, s := range runs.all() {
		counted[s[:1]]++
	}
	for k, n := range counted {
		require.LessOrEqual(t, n, 3, "key %s ran %d times", k, n)
	}
}
