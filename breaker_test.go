package zkafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/zkafka-go/zkafka/internal/commit"
)

// breakerLog records a breaker's transitions.
type breakerLog struct {
	mu sync.Mutex
	tr []string
}

func (l *breakerLog) changed(from, to CircuitBreakerState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tr = append(l.tr, from.String()+"->"+to.String())
}

func (l *breakerLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.tr...)
}

// openCut is a waitCut that nothing ends.
func openCut() waitCut { return waitCut{m: &Message{}} }

// fail admits one message and reports it failed.
func fail(t *testing.T, b *breaker) {
	t.Helper()
	done, ok := b.admit(openCut())
	require.True(t, ok)
	done.report(breakerFailure)
}

// TestBreakerTransitions walks every transition of the state machine in breaker.go.
func TestBreakerTransitions(t *testing.T) {
	var log breakerLog
	b := newBreaker("t", 2, 30*time.Millisecond, false, log.changed)
	require.False(t, b.isOpen())

	// closed: a success resets the count of consecutive failures.
	fail(t, b)
	done, ok := b.admit(openCut())
	require.True(t, ok)
	done.report(breakerSuccess)
	fail(t, b)
	require.False(t, b.isOpen(), "one failure after a success does not open")
	require.Empty(t, log.all())

	// closed -> open after 2 consecutive failures.
	fail(t, b)
	require.True(t, b.isOpen())
	require.Equal(t, []string{"closed->open"}, log.all())

	// open -> half-open: admit sleeps out the open period and lets one probe through.
	probe, ok := b.admit(openCut())
	require.True(t, ok)
	require.Equal(t, []string{"closed->open", "open->half-open"}, log.all())
	require.False(t, b.isOpen())

	// half-open -> open: the probe fails.
	require.True(t, probe.probe, "admitted half-open: the probe")
	probe.report(breakerFailure)
	require.True(t, b.isOpen())
	require.Equal(t, []string{"closed->open", "open->half-open", "half-open->open"}, log.all())

	// open -> half-open -> closed: the next probe succeeds.
	probe, ok = b.admit(openCut())
	require.True(t, ok)
	probe.report(breakerSuccess)
	require.False(t, b.isOpen())
	require.Equal(t, []string{"closed->open", "open->half-open", "half-open->open", "open->half-open", "half-open->closed"}, log.all())
}

// TestBreakerClosedAsksGobreakerOnlyWhatCounts: while closed, successes with no failure
// counted never reach gobreaker (no lock, no clock per message); a failure does, and so does
// the success after it, which resets the count.
func TestBreakerClosedAsksGobreakerOnlyWhatCounts(t *testing.T) {
	b := newBreaker("t", 3, time.Minute, false, nil)
	succeed := func() {
		done, ok := b.admit(openCut())
		require.True(t, ok)
		done.report(breakerSuccess)
	}
	for range 100 {
		succeed()
	}
	require.Zero(t, b.cb.Counts().Requests, "successes while nothing is counted")
	fail(t, b)
	fail(t, b)
	require.Equal(t, uint32(2), b.cb.Counts().ConsecutiveFailures)
	succeed()
	require.Zero(t, b.cb.Counts().ConsecutiveFailures, "the success after failures resets them")
	fail(t, b)
	fail(t, b)
	require.False(t, b.isOpen(), "two consecutive failures of three")
	fail(t, b)
	require.True(t, b.isOpen())
}

// TestBreakerTicketOfAnEarlierStateReportsNothing: a run admitted closed that ends after the
// breaker opened and closed again does not count in the new closed state.
func TestBreakerTicketOfAnEarlierStateReportsNothing(t *testing.T) {
	b := newBreaker("t", 2, time.Millisecond, false, nil)
	stale, ok := b.admit(openCut())
	require.True(t, ok)
	fail(t, b)
	fail(t, b)
	require.True(t, b.isOpen())
	probe, ok := b.admit(openCut())
	require.True(t, ok)
	require.True(t, probe.probe)
	probe.report(breakerSuccess)
	require.False(t, b.blocking(), "closed again")
	fail(t, b)
	stale.report(breakerFailure)
	require.False(t, b.isOpen(), "the stale failure is not the second")
	require.Equal(t, uint32(1), b.cb.Counts().ConsecutiveFailures)
}

// TestBreakerHalfOpenAdmitsOneProbe: while the probe runs, a second message waits for its
// outcome and goes through once the breaker closed.
func TestBreakerHalfOpenAdmitsOneProbe(t *testing.T) {
	b := newBreaker("t", 1, 10*time.Millisecond, false, nil)
	fail(t, b)
	probe, ok := b.admit(openCut())
	require.True(t, ok)
	second := make(chan breakerTicket)
	go func() {
		done, ok := b.admit(openCut())
		if ok {
			second <- done
		}
	}()
	select {
	case <-second:
		t.Fatal("a second message passed a half-open breaker while the probe ran")
	case <-time.After(50 * time.Millisecond):
	}
	probe.report(breakerSuccess)
	(<-second).report(breakerSuccess)
}

// TestBreakerUncountedAndRetryingOutcomes: in the closed state neither a failure that is the
// message's own fault nor one that will be retried counts, nor resets the count; as the probe,
// the first closes the breaker and the second opens it again.
func TestBreakerUncountedAndRetryingOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		probe     breakerOutcome
		wantAfter string
	}{
		{"uncounted", breakerUncounted, "half-open->closed"},
		{"retrying", breakerRetrying, "half-open->open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log breakerLog
			b := newBreaker("t", 2, 10*time.Millisecond, false, log.changed)
			fail(t, b)
			for range 10 {
				done, ok := b.admit(openCut())
				require.True(t, ok)
				require.False(t, done.probe)
				done.report(tc.probe)
			}
			require.False(t, b.isOpen(), "neither counts as a failure")
			fail(t, b)
			require.True(t, b.isOpen(), "nor resets the count: the failure before them still counts")
			probe, ok := b.admit(openCut())
			require.True(t, ok)
			require.True(t, probe.probe)
			probe.report(tc.probe)
			require.Equal(t, []string{"closed->open", "open->half-open", tc.wantAfter}, log.all())
		})
	}
}

// TestBreakerZeroTicketReportsNothing: without a breaker the ticket is the zero value.
func TestBreakerZeroTicketReportsNothing(t *testing.T) {
	for _, o := range []breakerOutcome{breakerSuccess, breakerFailure, breakerUncounted, breakerRetrying} {
		breakerTicket{}.report(o)
	}
}

// TestBreakerOpenIsLookedAtByIsOpen: an open breaker with no message waiting moves to
// half-open when the reader looks at it after the open period.
func TestBreakerOpenIsLookedAtByIsOpen(t *testing.T) {
	var log breakerLog
	b := newBreaker("t", 1, 5*time.Millisecond, false, log.changed)
	fail(t, b)
	require.Eventually(t, func() bool { return !b.isOpen() }, 5*time.Second, time.Millisecond)
	require.Equal(t, []string{"closed->open", "open->half-open"}, log.all())
}

// TestBreakerAdmitEndsOnCut: a message waiting at an open breaker is let go of at a stop, an
// abrupt cancel, or a revoke of its partition, and not at a kick for another partition.
func TestBreakerAdmitEndsOnCut(t *testing.T) {
	for _, name := range []string{"stopping", "done", "revoke"} {
		t.Run(name, func(t *testing.T) {
			b := newBreaker("t", 1, time.Hour, false, nil)
			fail(t, b)
			stopping, ctxDone, kick := make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
			trk := commit.NewTracker().Get("t", 0)
			m := &Message{trk: trk}
			res := make(chan bool)
			go func() {
				_, ok := b.admit(waitCut{stopping: stopping, done: ctxDone, kick: kick, m: m})
				res <- ok
			}()
			signal(kick) // not this message's partition yet: it keeps waiting
			select {
			case <-res:
				t.Fatal("admit returned at a kick for another partition")
			case <-time.After(20 * time.Millisecond):
			}
			switch name {
			case "stopping":
				close(stopping)
			case "done":
				close(ctxDone)
			case "revoke":
				trk.SetRevoking()
				signal(kick)
			}
			require.False(t, <-res)
		})
	}
}

// TestBreakerNilIsDisabled: a nil breaker is never open.
func TestBreakerNilIsDisabled(t *testing.T) {
	var b *breaker
	require.False(t, b.isOpen())
}

func TestG11CircuitBreakerOpensProbesAndCloses(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	var recs []rec
	for i := 0; i < 6; i++ {
		recs = append(recs, rec{Key: []byte("k"), Value: []byte(fmt.Sprint(i))})
	}
	e.produce(t, topic, recs)
	group := uniqueTestName(t, "g")
	cfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: group, Topic: topic}
	var mu sync.Mutex
	var log []string
	add := func(s string) { mu.Lock(); log = append(log, s); mu.Unlock() }
	var processed atomic.Int64
	wf := NewWorkFactory(e.client(t))
	w := wf.CreateWithFunc(cfg, func(ctx context.Context, m *Message) error {
		add(fmt.Sprintf("process %d", m.Offset))
		processed.Add(1)
		if m.Offset < 2 {
			return errors.New("boom")
		}
		if m.Offset == 2 {
			return ProcessError{Err: errors.New("not counted"), DisableCircuitBreak: true}
		}
		return nil
	}, CircuitBreakAfter(2), CircuitBreakFor(300*time.Millisecond), WithLifecycleHooks(LifecycleHooks{
		CircuitBreakerStateChanged: func(ctx context.Context, m LifecycleCircuitBreakerStateChanged) {
			add(fmt.Sprintf("%s->%s", m.From, m.To))
		},
	}))
	r := startWork(t, w)
	require.Eventually(t, func() bool { return processed.Load() == 6 }, 60*time.Second, 10*time.Millisecond)
	require.NoError(t, r.stop(t))
	mu.Lock()
	defer mu.Unlock()
	// Offset 2 is the probe: its failure is marked DisableCircuitBreak, so it does not count
	// as a failure and closes the breaker.
	require.Equal(t, []string{
		"process 0", "process 1", "closed->open", "open->half-open", "process 2", "half-open->closed", "process 3", "process 4", "process 5",
	}, log)
}
