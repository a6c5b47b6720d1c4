package zkafka

// The in-flight bound: how many messages (and payload bytes) a Run holds between reading them
// and letting go of them, finished or dropped (G8). The reader adds every message it
// dispatches; processors and revokes release them. It is a bound with one waiter, the reader,
// like a semaphore.Weighted whose Acquire never blocks the caller past a timeout.
//
// Invariant: msgs and size count exactly the messages dispatched, handed over to the queues
// (publish) and not yet released; with the reader's addedMsgs and addedSize, every message
// dispatched and not released. The thresholds, on that sum, for a bound of M messages and B
// bytes:
//   - full: msgs ≥ M or size ≥ B. The reader stops taking messages.
//   - roomFor: msgs ≤ M − max(M/10, 1) and size ≤ B − B/10. A waiting reader wakes up.
//   - halfFree: msgs ≤ M/2 and size ≤ B/2. A paused reader resumes (hysteresis: a pause drops
//     librdkafka's prefetched messages, so the next stretch of reading should be a long one).
//
// The reader (readloop.go) calls add, publish, full, halfFree, count and wait; release is
// called from any goroutine (processor.go, revoke.go, work.go).
//
// The reader counts what it dispatches in a batch on its side (added) and publishes it once,
// when it hands the batch over to the queues (readLoop.handOver), before any processor can
// release one of those messages; and it decides whether the bound is full from what it last
// saw of the shared counts (seen), which releases only lower, looking at them again only when
// that says full. The shared counts' cache line, which every release writes, is then read
// and written by the reader once per batch rather than twice per message.

import (
	"sync/atomic"
	"time"
)

// inFlight is the bound on read-but-unfinished messages of one Run.
// The reader goroutine and every goroutine that lets go of a message use it at once.
type inFlight struct {
	maxMsgs  int64 // immutable
	maxBytes int64 // immutable

	// The reader goroutine's own: messages (and bytes) added and not yet published, and the
	// shared counts as it last saw them (at least what they are now: only releases came since).
	addedMsgs, addedSize int64
	seenMsgs, seenSize   int64

	_ cacheLinePad

	msgs atomic.Int64 // atomic: messages dispatched, published and not released
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

// add counts one more message of b payload bytes, on the reader's side until publish.
func (f *inFlight) add(b int) {
	f.addedMsgs++
	f.addedSize += int64(b)
}

// publish adds what add counted to the shared counts: before the messages are handed over to
// the processors, so that no release comes before its add.
func (f *inFlight) publish() {
	if f.addedMsgs == 0 {
		return
	}
	f.seenMsgs = f.msgs.Add(f.addedMsgs)
	f.seenSize = f.size.Add(f.addedSize)
	f.addedMsgs, f.addedSize = 0, 0
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

// full reports whether the messages (or their bytes) reached the bound. It looks at the shared
// counts only when what the reader last saw of them says so.
func (f *inFlight) full() bool {
	if !f.over(f.seenMsgs, f.seenSize) {
		return false
	}
	f.seenMsgs, f.seenSize = f.msgs.Load(), f.size.Load()
	return f.over(f.seenMsgs, f.seenSize)
}

// over reports whether n messages of b bytes published, with the reader's unpublished ones,
// reach the bound.
func (f *inFlight) over(n, b int64) bool {
	return n+f.addedMsgs >= f.maxMsgs || b+f.addedSize >= f.maxBytes
}

// halfFree reports whether at most half the bound is in use.
func (f *inFlight) halfFree() bool {
	return f.count() <= f.maxMsgs/2 && f.size.Load()+f.addedSize <= f.maxBytes/2
}

// count is the number of messages in flight, as the reader knows it (with what it has not
// published yet).
func (f *inFlight) count() int64 { return f.msgs.Load() + f.addedMsgs }

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
	if f.roomFor(f.count(), f.size.Load()+f.addedSize) {
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
