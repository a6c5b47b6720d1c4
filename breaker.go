package zkafka

// The circuit breaker of one Run (G11): after CircuitBreakAfter consecutive failed messages no
// processor starts a message for CircuitBreakFor, then one probe decides. It wraps
// gobreaker's two-step breaker, which counts and moves the state; this type adds the waiting.
//
// States and transitions (gobreaker's, with MaxRequests 1):
//
//	closed    --CircuitBreakAfter consecutive failures-->   open
//	open      --CircuitBreakFor elapsed, on the next look--> half-open
//	half-open --the probe (one message) succeeds-->          closed
//	half-open --the probe fails-->                            open (for CircuitBreakFor again)
//
// While open, admit blocks the processors without a busy loop: each sleeps until the open
// period is over or the state changes (every transition closes and replaces the changed
// channel). The reader (readloop.go) asks isOpen to pause the partitions while open, and its
// look is what moves an idle breaker to half-open. Processors (processor.go) call admit before
// each run of the handler and report its outcome on the ticket admit returns.
//
// Only some outcomes count (G17, errclass.go): a success resets the count of consecutive
// failures, a transient failure after its last attempt adds to it; a failure that is the
// message's own fault (or not counted by ProcessError.DisableCircuitBreak) and a failure that
// will be retried leave it as it is. gobreaker has no such outcome: in the closed state the
// ticket simply never reports it (gobreaker counts only reported requests, and an unreported
// one costs nothing while closed). A probe must be reported: an uncounted probe closes the
// breaker (the handler ran to a verdict), a probe that will be retried opens it again (the
// dependency still fails).
// The reader reports failed reads through fail.
//
// While closed, the breaker is not asked for each message: gobreaker's Allow and done lock
// its mutex and read the clock, twice per message, which was 6 % of the CPU of a noop
// handler (make bench, noop-s8). A closed ticket reports to gobreaker only what changes its
// count: a failure, and a success while failures may be counted (failures > 0). failures is
// raised after gobreaker counted a failure and cleared before a success is reported, so that
// a success skipped while it is 0 stands for a success that came before that failure. A
// ticket taken in an earlier state (gen) reports nothing, as gobreaker drops the report of an
// earlier generation.

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker"
)

// breaker is the circuit breaker gate. A nil *breaker is a disabled one: never open.
//
// The processors, the reader goroutine and Work.Status use it at once.
type breaker struct {
	cb      *gobreaker.TwoStepCircuitBreaker // immutable; gobreaker locks its own state
	openFor time.Duration                    // immutable
	// busyLoop is DisableBusyLoopBreaker: recheck every breakerRecheck instead of sleeping.
	// Immutable.
	busyLoop bool
	// onChange is called by transition, under gobreaker's lock. Immutable.
	onChange func(from, to CircuitBreakerState)

	open     atomic.Bool   // atomic; set by transition
	halfOpen atomic.Bool   // atomic; set by transition before the probe is admitted
	gen      atomic.Uint64 // atomic; transitions so far, counted after open and halfOpen are set
	failures atomic.Int64  // atomic; failures reported since the last reported success (closed)
	mu       sync.Mutex
	openedAt time.Time     // guarded by mu
	changed  chan struct{} // guarded by mu; closed and replaced on every transition
}

// newBreaker returns a closed breaker that opens after `after` consecutive failures, for
// openFor. onChange is called on every transition, after the breaker's own bookkeeping.
func newBreaker(name string, after uint32, openFor time.Duration, busyLoop bool, onChange func(from, to CircuitBreakerState)) *breaker {
	b := &breaker{openFor: openFor, busyLoop: busyLoop, onChange: onChange, changed: make(chan struct{})}
	b.cb = gobreaker.NewTwoStepCircuitBreaker(gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= after
		},
		OnStateChange: b.transition,
	})
	return b
}

// isOpen reports whether the breaker is open. Looking at an open breaker lets it move to
// half-open once its open period is over.
func (b *breaker) isOpen() bool {
	if b == nil {
		return false
	}
	open := b.open.Load()
	if open {
		b.cb.State()
	}
	return open
}

// breakerOutcome is what one run of the handler tells the breaker.
type breakerOutcome uint8

const (
	breakerSuccess   breakerOutcome = iota // resets the consecutive failures; a probe closes
	breakerFailure                         // counts; a failed probe opens the breaker again
	breakerUncounted                       // not the dependency's fault: not counted; a probe closes
	breakerRetrying                        // will be retried: not counted yet; a probe opens again
)

// breakerTicket reports the outcome of one admitted run. The zero ticket (no breaker) reports
// nothing.
type breakerTicket struct {
	closed *breaker           // admitted closed, in the state counted by gen; done is nil
	gen    uint64             // closed's gen at admission
	done   func(success bool) // gobreaker's, when admitted by it (open or half-open before)
	probe  bool               // admitted in the half-open state
}

// report tells the breaker how the run ended. Call it once.
func (t breakerTicket) report(o breakerOutcome) {
	switch {
	case t.closed != nil:
		t.closed.closedOutcome(t.gen, o)
	case t.done == nil:
	case o == breakerSuccess:
		t.done(true)
	case o == breakerFailure:
		t.done(false)
	case !t.probe:
		// Closed (or since opened): not counted, so not reported.
	case o == breakerUncounted:
		t.done(true)
	default: // breakerRetrying
		t.done(false)
	}
}

// admit waits until the breaker lets one run through and returns its ticket. It returns false
// when cut ends the wait first.
func (b *breaker) admit(cut waitCut) (breakerTicket, bool) {
	for {
		if gen := b.gen.Load(); !b.open.Load() && !b.halfOpen.Load() {
			return breakerTicket{closed: b, gen: gen}, true
		}
		done, err := b.cb.Allow()
		if err == nil {
			return breakerTicket{done: done, probe: b.halfOpen.Load()}, true
		}
		changed, wait := b.pause()
		t := time.NewTimer(wait)
		ok := cut.sleep(t.C, changed)
		t.Stop()
		if !ok {
			return breakerTicket{}, false
		}
	}
}

// closedOutcome reports the outcome of a run admitted closed in the state gen: in the closed
// state only successes and failures count, and a success changes nothing while no failure is
// counted.
func (b *breaker) closedOutcome(gen uint64, o breakerOutcome) {
	switch o {
	case breakerSuccess:
		if b.failures.Load() == 0 || b.gen.Load() != gen {
			return
		}
		b.failures.Store(0)
		b.count(gen, true)
	case breakerFailure:
		b.count(gen, false)
		b.failures.Add(1)
	}
}

// count reports one run to gobreaker, unless the state changed since gen.
func (b *breaker) count(gen uint64, success bool) {
	if b.gen.Load() != gen {
		return
	}
	if done, err := b.cb.Allow(); err == nil {
		done(success)
	}
}

// pause returns what a caller kept out by the breaker sleeps on: the channel closed at the
// next transition, and how long until the open period is over (breakerRecheck when it is
// over, or with DisableBusyLoopBreaker).
func (b *breaker) pause() (chan struct{}, time.Duration) {
	b.mu.Lock()
	changed := b.changed
	d := time.Until(b.openedAt.Add(b.openFor))
	b.mu.Unlock()
	if b.busyLoop || d <= 0 {
		d = breakerRecheck
	}
	return changed, d
}

// wait sleeps while the breaker is open, for the reader of a Reader that cannot pause: until
// the open period is over, the state changes or a stop channel closes, and at most max.
func (b *breaker) wait(max time.Duration, stop1, stop2 <-chan struct{}) {
	changed, d := b.pause()
	t := time.NewTimer(min(d, max))
	defer t.Stop()
	select {
	case <-t.C:
	case <-changed:
	case <-stop1:
	case <-stop2:
	}
}

// fail counts a failed read (a read error, or no reader from the ClientProvider) as zkafka v2
// does: a failure like a failed message, when the breaker lets one through; nothing while it
// is open.
func (b *breaker) fail() {
	if b == nil {
		return
	}
	if done, err := b.cb.Allow(); err == nil {
		done(false)
		b.failures.Add(1)
	}
}

// transition is gobreaker's OnStateChange.
func (b *breaker) transition(_ string, from, to gobreaker.State) {
	b.mu.Lock()
	if to == gobreaker.StateOpen {
		b.openedAt = time.Now()
	}
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
	b.open.Store(to == gobreaker.StateOpen)
	b.halfOpen.Store(to == gobreaker.StateHalfOpen)
	b.gen.Add(1)
	if b.onChange != nil {
		b.onChange(breakerState(from), breakerState(to))
	}
}

// describe returns the state and when the breaker last opened (zero: never), for Work.Status.
func (b *breaker) describe() (CircuitBreakerState, time.Time) {
	b.mu.Lock()
	opened := b.openedAt
	b.mu.Unlock()
	switch {
	case b.open.Load():
		return CircuitBreakerStateOpen, opened
	case b.halfOpen.Load():
		return CircuitBreakerStateHalfOpen, opened
	}
	return CircuitBreakerStateClosed, opened
}

// blocking reports whether the breaker keeps messages from running now: it is open, or
// half-open with its probe out. A nil breaker never does.
func (b *breaker) blocking() bool {
	return b != nil && (b.open.Load() || b.halfOpen.Load())
}

// breakerState maps gobreaker's states to the public ones.
func breakerState(s gobreaker.State) CircuitBreakerState {
	switch s {
	case gobreaker.StateOpen:
		return CircuitBreakerStateOpen
	case gobreaker.StateHalfOpen:
		return CircuitBreakerStateHalfOpen
	default:
		return CircuitBreakerStateClosed
	}
}
