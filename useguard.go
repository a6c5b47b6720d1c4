package zkafka

// useGuard keeps the calls into a consumer apart from its close (G15) without letting a call
// that does not return hold everything else: any number of calls run at once (enter, leave);
// close refuses every later call at once and reports when the calls in progress have all
// left, so that the consumer is destroyed only then and whoever closes it may stop waiting
// and let that happen later (KReader.Close).
//
// Rejected: a sync.RWMutex, held shared by the calls and exclusively by Close. A commit that
// waits for a group coordinator that is away holds its read lock for as long (librdkafka
// retries it until the coordinator is back), and then the waiting Lock holds Close, a cancelled
// Run, and every later RLock (Work.Status) with it; a Lock cannot give up.
//
// Invariant: once closed, users only goes down, and idle is closed when it reaches 0.

import (
	"sync"
	"time"
)

// useGuard is the guard described above. Its zero value is open, with no call in progress.
type useGuard struct {
	mu     sync.Mutex
	closed bool          // guarded by mu
	users  int           // guarded by mu; calls in progress
	idle   chan struct{} // guarded by mu; made by close; closed once users is 0
}

// enter starts a call, unless the guard is closed (false). Every true is followed by a leave.
// Calls may nest (a rebalance callback inside a poll).
func (g *useGuard) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.users++
	return true
}

// leave ends a call started by enter.
func (g *useGuard) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.users--
	if g.users == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// close refuses every later enter and returns a channel closed once no call is in progress.
// first is false (and idle nil) when the guard was closed before.
func (g *useGuard) close() (idle <-chan struct{}, first bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, false
	}
	g.closed = true
	ch := make(chan struct{})
	if g.users == 0 {
		close(ch)
	} else {
		g.idle = ch
	}
	return ch, true
}

// isClosed reports whether close was called.
func (g *useGuard) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// afterIdle runs release on a goroutine of its own once idle is closed, and waits for it for
// at most wait. gone is closed when release has returned; inTime reports whether it had
// within wait.
func afterIdle(idle <-chan struct{}, wait time.Duration, release func()) (gone <-chan struct{}, inTime bool) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-idle
		release()
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-done:
		return done, true
	case <-timer.C:
		return done, false
	}
}
