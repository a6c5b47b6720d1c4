package zkafka

import (
	"sync"
	"sync/atomic"
)

// A virtual partition is an unbounded FIFO of messages drained, in order, by one processor
// goroutine at a time. Equal keys always land on the same virtual partition, so messages of a
// key are processed one at a time in offset order (G2). The queues are bounded together, not
// one by one: the reader pauses Kafka when the total of unfinished messages reaches the
// Work's bound, so a busy virtual partition never blocks the reader from feeding the others.

// routeKey maps a key to a virtual partition: 32-bit FNV-1a of the key bytes, modulo n. It is
// stable across processes and releases. Nil keys do not come here; they are spread
// round-robin.
func routeKey(key string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

type virtualPartition struct {
	idx int

	mu     sync.Mutex
	q      []*Message // ring, len is a power of two
	head   int
	n      int
	closed bool // no more pushes: drain, then exit

	wake chan struct{} // a push happened (capacity 1)
	kick chan struct{} // a rebalance wants waiting messages to look at their partition (capacity 1)

	// gen identifies the goroutine currently serving this virtual partition; it moves on when
	// the watchdog abandons a stuck handler and starts a replacement.
	gen atomic.Uint64
	// running is the message whose handler runs now (the watchdog watches it).
	running atomic.Pointer[Message]
	// startedAt is when the running handler started, in UnixNano.
	startedAt atomic.Int64
	// cbDone completes the circuit breaker request of the running message; it is handed over
	// with running (written before running is set, read by whoever clears running).
	cbDone func(bool)
	// busy is the message this virtual partition has popped and not yet let go of.
	busy atomic.Pointer[Message]
}

func newVirtualPartition(idx int) *virtualPartition {
	return &virtualPartition{
		idx:  idx,
		q:    make([]*Message, 16),
		wake: make(chan struct{}, 1),
		kick: make(chan struct{}, 1),
	}
}

// push appends m and wakes the processor.
func (vp *virtualPartition) push(m *Message) {
	vp.mu.Lock()
	if vp.n == len(vp.q) {
		q := make([]*Message, 2*len(vp.q))
		for i := 0; i < vp.n; i++ {
			q[i] = vp.q[(vp.head+i)&(len(vp.q)-1)]
		}
		vp.q, vp.head = q, 0
	}
	vp.q[(vp.head+vp.n)&(len(vp.q)-1)] = m
	vp.n++
	vp.mu.Unlock()
	signal(vp.wake)
}

// pop removes the oldest message; ok is false when the queue is empty. closed reports whether
// no more messages will come.
func (vp *virtualPartition) pop() (m *Message, ok, closed bool) {
	vp.mu.Lock()
	defer vp.mu.Unlock()
	if vp.n == 0 {
		return nil, false, vp.closed
	}
	i := vp.head
	m = vp.q[i]
	vp.q[i] = nil
	vp.head = (vp.head + 1) & (len(vp.q) - 1)
	vp.n--
	return m, true, false
}

// close lets the processor exit once the queue is drained.
func (vp *virtualPartition) close() {
	vp.mu.Lock()
	vp.closed = true
	vp.mu.Unlock()
	signal(vp.wake)
}

// removeIf drops the queued messages for which drop returns true, keeping the order of the
// rest, and returns the dropped ones.
func (vp *virtualPartition) removeIf(drop func(*Message) bool) []*Message {
	vp.mu.Lock()
	defer vp.mu.Unlock()
	var dropped []*Message
	mask := len(vp.q) - 1
	kept := 0
	for i := 0; i < vp.n; i++ {
		m := vp.q[(vp.head+i)&mask]
		if drop(m) {
			dropped = append(dropped, m)
			continue
		}
		vp.q[(vp.head+kept)&mask] = m
		kept++
	}
	for i := kept; i < vp.n; i++ {
		vp.q[(vp.head+i)&mask] = nil
	}
	vp.n = kept
	return dropped
}

// signal does a non-blocking send on a capacity-1 channel.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
