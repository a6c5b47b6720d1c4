package zkafka

// The in-flight bound: how many messages (and payload bytes) a Run holds between reading them
// and letting go of them, finished or dropped (G8). The reader adds every message it
// dispatches; processors and revokes release them. It is a bound with one waiter, the reader,
// like a semaphore.Weighted whose Acquire never blocks the caller past a timeout.
//
// Invariant: msgs and size count exactly the messages dispatched and not yet released. The
// thresholds, for a bound of M messages and B bytes:
//   - full: msgs ≥ M or size ≥ B. The reader stops taking messages.
//   - roomFor: msgs ≤ M − max(M/10, 1) and size ≤ B − B/10. A waiting reader wakes up.
//   - halfFree: msgs ≤ M/2 and size ≤ B/2. A paused reader resumes (hysteresis: a pause drops
//     librdkafka's prefetched messages, so the next stretch of reading should be a long one).
//
// The reader (readloop.go) calls add, full, halfFree and wait; release is called from any
// goroutine (processor.go, revoke.go, work.go).

import (
	"sync/atomic"
	"time"
)

// inFlight is the bound on read-but-unfinished messages of one Run.
// The reader goroutine and every goroutine that lets go of a message use it at once.
type inFlight struct {
	maxMsgs  int64 // immutable
	maxBytes int64 // immutable

	msgs atomic.Int64 // atomic: messages dispatched and not released
	size atomic.Int64 // atomic: payload bytes of those

	// room is signalled (capacity 1) by release when the reader waits and there is room.
	// Immutable.
	room chan struct{}
	// wanted is set while the reader waits on room. Atomic.
	wanted atomic.Bool
}

func newInFlight(maxMsgs int, maxBytes int64) *inFlight {
	return &inFlight{maxMsgs: int64(maxMsgs), maxBytes: maxBytes, room: make(chan struct{}, 1)}
}

// add counts one more message of b payload bytes.
func (f *inFlight) add(b int) {
	f.msgs.Add(1)
	f.size.Add(int64(b))
}

// release counts a message of b payload bytes as let go of, and wakes the reader when it
// waits and there is room now.
func (f *inFlight) release(b int) {
	n := f.msgs.Add(-1)
	s := f.size.Add(-int64(b))
	if f.wanted.Load() && f.roomFor(n, s) && f.wanted.CompareAndSwap(true, false) {
		signal(f.room)
	}
}

// full reports whether the messages (or their bytes) reached the bound.
func (f *inFlight) full() bool {
	return f.msgs.Load() >= f.maxMsgs || f.size.Load() >= f.maxBytes
}

// halfFree reports whether at most half the bound is in use.
func (f *inFlight) halfFree() bool {
	return f.msgs.Load() <= f.maxMsgs/2 && f.size.Load() <= f.maxBytes/2
}

// roomFor reports whether n messages of b bytes in flight leave a tenth of the bound free:
// enough for the reader to go on without waking for every message.
func (f *inFlight) roomFor(n, b int64) bool {
	return n <= f.maxMsgs-max(f.maxMsgs/10, 1) && b <= f.maxBytes-f.maxBytes/10
}

// wait waits, up to d, until a tenth of the bound is free. It reports whether there is room
// (or one of the stop channels closed) rather than the wait timing out. Resuming early keeps
// the window of messages in flight wide, and with it the number of distinct keys the virtual
// partitions can work on.
func (f *inFlight) wait(d time.Duration, stop1, stop2 <-chan struct{}) bool {
	f.wanted.Store(true)
	if f.roomFor(f.msgs.Load(), f.size.Load()) {
		f.wanted.Store(false)
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.room:
		return true
	case <-stop1:
		return true
	case <-stop2:
		return true
	case <-t.C:
		f.wanted.Store(false)
		return false
	}
}
