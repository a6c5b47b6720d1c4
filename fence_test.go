package zkafka

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestG19NoHandlerStartsWhileTheMembershipIsInDoubt: the broker refuses the member's commits
// with REBALANCE_IN_PROGRESS (the group may be finishing a rebalance without it). From the
// first refusal no handler starts, though messages arrive and the reader polls on; Status
// says the Work is fenced and why. Once a commit is accepted again the fence lifts and the
// held messages run, in order.
func TestG19NoHandlerStartsWhileTheMembershipIsInDoubt(t *testing.T) {
	t.Run("message", func(t *testing.T) { testG19InDoubt(t, false) })
	t.Run("batch", func(t *testing.T) { testG19InDoubt(t, true) })
}

func testG19InDoubt(t *testing.T, batch bool) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 1)
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic,
		AutoCommitIntervalMs: intp(100)}
	var starts atomic.Int64
	done := make(chan int64, 16)
	handle := func(ctx context.Context, m *Message) error {
		starts.Add(1)
		done <- m.Offset
		return nil
	}
	wf := NewWorkFactory(e.client(t))
	w := wf.CreateWithFunc(cfg, handle)
	if batch {
		w = wf.CreateBatchWithFunc(cfg, func(ctx context.Context, msgs []*Message) error {
			for _, m := range msgs {
				_ = handle(ctx, m)
			}
			return nil
		})
	}
	r := startWork(t, w)
	e.produce(t, topic, []rec{{Key: []byte("a"), Value: []byte("0")}})
	require.Equal(t, int64(0), nextOffset(t, done))
	require.Eventually(t, func() bool { return committedOf(e.cluster, group, topic, 0) == 1 }, 30*time.Second, 10*time.Millisecond)

	refuse := e.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: group, Err: kerr.RebalanceInProgress, Count: -1})
	t.Cleanup(refuse.Remove)
	e.produce(t, topic, []rec{{Key: []byte("a"), Value: []byte("1")}})
	require.Equal(t, int64(1), nextOffset(t, done)) // its commit is the first refused
	require.Eventually(t, func() bool { return w.Status().Fenced }, 10*time.Second, 10*time.Millisecond)
	st := w.Status()
	require.Contains(t, strings.ToLower(st.FencedBecause), "rebalance", "Status says why")
	require.False(t, st.FencedSince.IsZero())

	e.produce(t, topic, []rec{{Key: []byte("a"), Value: []byte("2")}, {Key: []byte("b"), Value: []byte("3")}, {Key: []byte("a"), Value: []byte("4")}})
	select {
	case o := <-done:
		t.Fatalf("offset %d started while the membership was in doubt", o)
	case <-time.After(2 * time.Second): // 20 commit intervals: probes refused
	}
	require.Equal(t, int64(2), starts.Load(), "exactly the two messages before the refusal ran")
	require.True(t, w.Status().Fenced)
	require.Equal(t, int64(1), committedOf(e.cluster, group, topic, 0))

	refuse.Remove()
	for want := int64(2); want <= 4; want++ {
		select {
		case o := <-done:
			require.Equal(t, want, o)
		case <-time.After(10 * time.Second):
			t.Fatalf("offset %d did not run within 10 s of the broker accepting commits again", want)
		}
	}
	require.False(t, w.Status().Fenced)
	require.NoError(t, r.stop(t))
	require.Equal(t, int64(5), committedOf(e.cluster, group, topic, 0))
	require.Equal(t, int64(5), starts.Load())
}

func TestDoubtfulCommitError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{kafka.NewError(kafka.ErrRebalanceInProgress, "x", false), true},
		{kafka.NewError(kafka.ErrIllegalGeneration, "x", false), true},
		{kafka.NewError(kafka.ErrUnknownMemberID, "x", false), true},
		{kafka.NewError(kafka.ErrFencedMemberEpoch, "x", false), true},
		{kafka.NewError(kafka.ErrStaleMemberEpoch, "x", false), true},
		{kafka.NewError(kafka.ErrNotCoordinator, "x", false), false},
		{kafka.NewError(kafka.ErrRequestTimedOut, "x", false), false},
		{errors.New("other"), false},
		{nil, false},
	} {
		require.Equal(t, tc.want, doubtfulCommitError(tc.err), "%v", tc.err)
	}
}

// TestG19NoHandlerStartsWhileTheCoordinatorIsSilent: the group's coordinator stops answering
// (the member's periodic commit is held, its heartbeats unanswered). Once half the session
// timeout has passed without an answer no handler starts, though the partition's leader
// still serves fetches; when the coordinator is back the member rejoins (the broker expired
// its session meanwhile) and the held message runs once.
func TestG19NoHandlerStartsWhileTheCoordinatorIsSilent(t *testing.T) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 1)
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic,
		SessionTimeoutMillis: intp(2000), MaxPollIntervalMillis: intp(10000), AutoCommitIntervalMs: intp(100)}
	var starts atomic.Int64
	done := make(chan int64, 16)
	w := NewWorkFactory(e.client(t)).CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		starts.Add(1)
		done <- m.Offset
		return nil
	})
	r := startCommitted(t, e, w, group, topic, done)

	refused, back := coordinatorAway(e.cluster, group, 2)
	t.Cleanup(back)
	e.produce(t, topic, []rec{{Key: []byte("a"), Value: []byte("1")}})
	require.Equal(t, int64(1), nextOffset(t, done))
	awaitRefused(t, refused) // the periodic commit of offset 1 waits for a coordinator
	require.Eventually(t, func() bool { return w.Status().Fenced }, 10*time.Second, 10*time.Millisecond)
	require.ErrorContains(t, errors.New(w.Status().FencedBecause), "answered no commit")

	e.produce(t, topic, []rec{{Key: []byte("a"), Value: []byte("2")}})
	// Held past the session timeout: the group gave the partition up.
	heldThenRun(t, e, r, group, topic, done, &starts, 3*time.Second, 30*time.Second, func() {}, back)
}

// TestFenceTransitions walks the fence through each transition: down, raised by a refusal,
// lifted by an answer, raised by silence, and a wait cut by a stop.
func TestFenceTransitions(t *testing.T) {
	var nilFence *fence
	require.True(t, nilFence.pass(waitCut{}), "no fence: pass")

	f := newFence(NoopLogger{}, "g", time.Second, 0)
	stopping := make(chan struct{})
	cut := waitCut{stopping: stopping}
	require.True(t, f.pass(cut), "down before any answer: pass")
	require.False(t, f.wantsProbe(time.Now()))

	f.raise(kafka.NewError(kafka.ErrRebalanceInProgress, "refused", false))
	raised, since, cause := f.state()
	require.True(t, raised)
	require.False(t, since.IsZero())
	require.Contains(t, cause, "refused")
	require.True(t, f.wantsProbe(time.Now()), "raised: the next commit probes")
	require.True(t, passOnceLifted(t, f, cut, func() { f.answer("a commit") }), "lifted by an answer")
	require.Equal(t, int64(1), f.episodes.Load())

	now := time.Now()
	require.False(t, f.wantsProbe(now.Add(400*time.Millisecond)), "answered just now")
	require.True(t, f.wantsProbe(now.Add(600*time.Millisecond)), "silent for half of doubtAfter: probe")
	f.check(now.Add(900 * time.Millisecond))
	require.False(t, f.up.Load(), "silent for less than doubtAfter: down")
	f.check(now.Add(1100 * time.Millisecond))
	require.True(t, f.up.Load(), "silent for doubtAfter: raised")
	_, _, cause = f.state()
	require.Equal(t, errNoAnswer.Error(), cause)
	require.Equal(t, int64(2), f.episodes.Load())

	f.heard(false)
	require.True(t, f.up.Load(), "a callback that keeps partitions does not lift it")
	require.Less(t, f.silentFor(time.Now()), 100*time.Millisecond, "but it is an answer")
	require.False(t, passOnceLifted(t, f, cut, func() { close(stopping) }), "a stop cuts the wait: the message is let go of")
	f.heard(true)
	require.False(t, f.up.Load(), "a callback that left no partition lifts it")
}

// TestG16HandlersWaitForCommitsThatFallBehind: the broker holds the member's commit (as it
// does behind a JoinGroup waiting for a dead member under the classic protocols), or refuses
// it for a reason that says nothing of the membership. Once no commit has been accepted for
// a quarter of the commit interval (at least 100 ms) no handler starts, so the work a crash would run again stays
// bounded; nothing is logged about it and Status shows no fence (this is not a doubt). When
// the broker accepts a commit again, the held message runs, once.
func TestG16HandlersWaitForCommitsThatFallBehind(t *testing.T) {
	t.Run("late", func(t *testing.T) {
		testCommitsFallBehind(t, func(e *testEnv, group string) (arrived <-chan struct{}, back func()) {
			came, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			e.cluster.ControlKey(kmsg.OffsetCommit.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
				if req.(*kmsg.OffsetCommitRequest).Group != group {
					e.cluster.KeepControl()
					return nil, nil, false
				}
				once.Do(func() { close(came) })
				e.cluster.SleepControl(func() { <-release })
				return nil, nil, false // then the broker commits it as usual
			})
			return came, sync.OnceFunc(func() { close(release) })
		})
	})
	t.Run("refused", func(t *testing.T) {
		testCommitsFallBehind(t, func(e *testEnv, group string) (arrived <-chan struct{}, back func()) {
			refuse := e.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: group, Err: kerr.CoordinatorLoadInProgress, Count: -1})
			came := make(chan struct{})
			go func() {
				if refuse.Wait(t.Context(), 1) == nil {
					close(came)
				}
			}()
			return came, refuse.Remove
		})
	})
}

// testCommitsFallBehind runs TestG16HandlersWaitForCommitsThatFallBehind with commits held
// back by stall, which returns a channel closed when the first commit is held and the
// function that ends the stall.
func testCommitsFallBehind(t *testing.T, stall func(e *testEnv, group string) (<-chan struct{}, func())) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 1)
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic,
		SessionTimeoutMillis: intp(20000), AutoCommitIntervalMs: intp(100)} // a hold after 100 ms, a doubt after 10 s
	logs := newCaptureLogger()
	client := NewClient(Config{BootstrapServers: []string{e.addr}}, LoggerOption(logs))
	t.Cleanup(func() { _ = client.Close() })
	var starts atomic.Int64
	done := make(chan int64, 16)
	w := NewWorkFactory(client).CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		starts.Add(1)
		done <- m.Offset
		return nil
	})
	r := startCommitted(t, e, w, group, topic, done)

	arrived, back := stall(e, group)
	t.Cleanup(back)
	e.produce(t, topic, []rec{{Key: []byte("a"), Value: []byte("1")}})
	require.Equal(t, int64(1), nextOffset(t, done))
	awaitRefused(t, arrived) // its commit is held or refused
	held := func() bool { return w.run.Load().fence().isUp() }
	require.Eventually(t, held, 5*time.Second, 10*time.Millisecond, "held once commits fall behind, long before the doubt at 10 s")

	e.produce(t, topic, []rec{{Key: []byte("b"), Value: []byte("2")}})
	// Held for twenty times the hold's threshold.
	heldThenRun(t, e, r, group, topic, done, &starts, 2*time.Second, 10*time.Second, func() {
		require.False(t, w.Status().Fenced, "not a doubt: Status shows no fence")
	}, back)
	for _, l := range logs.all() {
		require.NotContains(t, l, "membership", "no doubt logged")
	}
}

// TestFenceHoldIsQuiet: a commit late past holdAfter raises the fence quietly (no line, no
// state for Status); its answer lifts it; a doubt while held turns the hold into a fence
// proper that the answer alone does not lift.
func TestFenceHoldIsQuiet(t *testing.T) {
	logs := newCaptureLogger()
	f := newFence(logs, "g", 10*time.Second, 500*time.Millisecond)
	now := time.Now()
	f.answer("a commit")
	f.sending(now)
	f.check(now.Add(400 * time.Millisecond))
	require.False(t, f.isUp(), "not late yet")
	f.check(now.Add(600 * time.Millisecond))
	require.True(t, f.isUp(), "late: held")
	raised, _, _ := f.state()
	require.False(t, raised, "a hold is not shown as a fence")
	require.True(t, passOnceLifted(t, f, waitCut{}, func() { f.answer("a commit") }), "lifted by an accepted commit")
	require.Empty(t, logs.all(), "a hold logs nothing")

	now = time.Now()
	f.sending(now) // refused: no answer
	f.sending(now.Add(300 * time.Millisecond))
	f.check(now.Add(600 * time.Millisecond))
	require.True(t, f.isUp(), "held from the first commit not accepted")
	f.heard(true)
	require.False(t, f.isUp(), "a rebalance that leaves no partition lifts it")
	f.check(now.Add(time.Second))
	require.False(t, f.isUp(), "and leaves nothing to commit")

	f.sending(now)
	f.check(now.Add(600 * time.Millisecond))
	require.True(t, f.isUp())
	f.raise(kafka.NewError(kafka.ErrRebalanceInProgress, "refused", false))
	require.True(t, f.isUp(), "a doubt is lifted only by the group")
	raised, _, cause := f.state()
	require.True(t, raised)
	require.Contains(t, cause, "refused")
	lines := logs.all()
	require.Len(t, lines, 1)
	require.Contains(t, lines[0], "membership of the group in doubt")
	f.answer("a commit")
	require.False(t, f.isUp())
}

// startCommitted starts w, runs offset 0 of topic through it and waits for its commit.
func startCommitted(t *testing.T, e *testEnv, w *Work, group, topic string, done <-chan int64) *running {
	t.Helper()
	r := startWork(t, w)
	e.produce(t, topic, []rec{{Key: []byte("a"), Value: []byte("0")}})
	require.Equal(t, int64(0), nextOffset(t, done))
	require.Eventually(t, func() bool { return committedOf(e.cluster, group, topic, 0) == 1 }, 30*time.Second, 10*time.Millisecond)
	return r
}

// heldThenRun checks the end of a test where offsets 0 and 1 ran and offset 2, just
// produced, is held: it does not start for quiet (held then runs, for assertions while it is
// held); once release is called it runs within within; the stop commits 3 and each offset
// ran once.
func heldThenRun(t *testing.T, e *testEnv, r *running, group, topic string, done <-chan int64, starts *atomic.Int64,
	quiet, within time.Duration, held func(), release func()) {
	t.Helper()
	select {
	case o := <-done:
		t.Fatalf("offset %d started while held", o)
	case <-time.After(quiet):
	}
	require.Equal(t, int64(2), starts.Load())
	held()
	release()
	select {
	case o := <-done:
		require.Equal(t, int64(2), o)
	case <-time.After(within):
		t.Fatalf("offset 2 did not run within %s of the release", within)
	}
	require.NoError(t, r.stop(t))
	require.Equal(t, int64(3), committedOf(e.cluster, group, topic, 0))
	require.Equal(t, int64(3), starts.Load(), "each offset ran once")
}

// passOnceLifted calls f.pass(cut) while f is up, checks that it waits, then calls lift (which
// lifts the fence or cuts the wait) and returns what pass returned.
func passOnceLifted(t *testing.T, f *fence, cut waitCut, lift func()) bool {
	t.Helper()
	passed := make(chan bool)
	go func() { passed <- f.pass(cut) }()
	select {
	case <-passed:
		t.Fatal("passed a raised fence")
	case <-time.After(50 * time.Millisecond):
	}
	lift()
	return <-passed
}
