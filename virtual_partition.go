package zkafka

// A virtual partition is an unbounded FIFO of messages drained, in order, by one processor
// goroutine at a time. While a key has messages in flight (queued, running, waiting for a
// retry or for a dead letter), every further message of that key goes to the same virtual partition, so the
// messages of a key are processed one at a time in offset order (G2). The queues are bounded
// together, not one by one: the reader pauses Kafka when the total of unfinished messages
// reaches the Work's bound, so a busy virtual partition never blocks the reader from feeding
// the others.
//
// Routing (keyRouter): a key with nothing in flight goes to the virtual partition with the
// fewest keys in flight, looking first at routeKey's choice (so an idle Work routes exactly by
// the hash) and taking another only when it has fewer active keys. A pure hash puts some
// virtual partitions under many more keys than others (1,000 keys over 64 virtual partitions:
// up to 20 on one, 15.6 on average; and the in-flight window often holds only the keys of one
// or two Kafka partitions, since librdkafka hands out a partition's fetched batch in one run),
// and at the in-flight bound the busiest virtual partition would set the pace for all of them.
//
// The reader loop (readloop.go) enqueues and routes; the processors (processor.go) pop; a
// revoke (revoke.go) removes the queued messages of revoked partitions.

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// routeKey maps a key to its preferred virtual partition: 32-bit FNV-1a of the key bytes,
// mixed by murmur3's 32-bit finalizer (FNV-1a alone spreads sequential keys such as "k1",
// "k2", … unevenly over many virtual partitions), modulo n. It is stable across processes and
// releases. Nil keys do not come here; they are spread round-robin.
func routeKey(key string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return int(h % uint32(n))
}

// virtualPartition is one queue of a Run and the handover state of the goroutine serving it
// (processor.go). The reader goroutine, the serving goroutine, the watchdog, revokes, dead
// letter writes and Work.Status use it at once.
//
// Its fields are grouped by who writes them how often, each group on cache lines of its own
// (the pads): the queue, which the reader writes once per batch; the serving goroutine's
// state, written for every message it runs; and keys, which the reader reads on many virtual
// partitions for every key it routes anew. Sharing a line, every message a processor ran
// took the line away from the reader's core, and back.
type virtualPartition struct {
	idx  int           // immutable
	wake chan struct{} // immutable; a push happened (capacity 1)
	kick chan struct{} // immutable; a rebalance wants waiting messages to look at their partition (capacity 1)

	_ cacheLinePad

	mu     sync.Mutex
	q      []*Message // guarded by mu; ring, len is a power of two
	head   int        // guarded by mu
	n      int        // guarded by mu
	closed bool       // guarded by mu; no more pushes: drain, then exit
	// parked holds messages waiting for a retry and the later messages of their keys
	// (parking.go). Guarded by mu.
	parked parking
	// popsUnchecked counts the queue pops since next last looked at the clock for a due
	// parked message. Guarded by mu.
	popsUnchecked int
	// eager asks the reader to wake the processor at every hand-over of a batch, not only at
	// its wakeEvery (readLoop.handOver): set while a batch Work's batch waits to fill, and
	// while its handlers (or ProcessBatch) run eagerAfter or longer, two within eagerFor
	// (handlerRan): a wake costs a slow handler little, and a late one leaves it idle. Atomic;
	// on the queue's cache line, which the reader's hand-over touches anyway.
	eager atomic.Bool

	_ cacheLinePad

	// gen identifies the goroutine currently serving this virtual partition; it moves on when
	// the watchdog abandons a stuck handler and starts a replacement. Atomic.
	gen atomic.Uint64
	// running is the message whose handler runs now (the watchdog watches it). Atomic: who
	// clears it by compare-and-swap owns the message's outcome.
	running atomic.Pointer[Message]
	// startedAt is when the running handler started, in UnixNano. Atomic; written before
	// running is set.
	startedAt atomic.Int64
	// ticket reports the running message's outcome to the circuit breaker. Guarded by
	// running: written by the serving goroutine before it sets running, read only by whoever
	// cleared running (the serving goroutine, or abandon's goroutine after the watchdog).
	ticket breakerTicket
	// busy is the message this virtual partition has popped and not yet let go of. Atomic.
	busy atomic.Pointer[Message]
	// batch and runningBatch are busy and running for a batch Work (batch_processor.go): the
	// batch taken and not yet let go of, and the batch whose ProcessBatch runs (who clears it
	// by compare-and-swap owns the batch's outcome). Atomic.
	batch        atomic.Pointer[batchRun]
	runningBatch atomic.Pointer[batchRun]
	// stalls counts the dead letters of this virtual partition whose write failed and has not
	// ended: while any does, its processor takes no new message (deadletter.go). Atomic.
	stalls atomic.Int32
	// slowAt is when a handler of this virtual partition last ended after running eagerAfter
	// or longer (monoNow's clock; neverSlow: none has). Atomic: a watchdog's replacement
	// goroutine takes over.
	slowAt atomic.Int64

	_ cacheLinePad

	// keys counts the keys routed here that have messages in flight. Atomic.
	keys atomic.Int64

	_ cacheLinePad
}

// cacheLinePad keeps the fields on either side of it off each other's cache lines (64 bytes
// on amd64 and most arm64; 128 covers the adjacent-line prefetch of x86 too).
type cacheLinePad [128]byte

// keyRoute is where a key's messages go while any of them is in flight.
type keyRoute struct {
	vp       int          // owned by the reader goroutine (set by route while inFlight is 0)
	inFlight atomic.Int64 // atomic: messages of the key routed and not yet let go of
}

// keyRouter assigns keys to virtual partitions. Only the reader goroutine calls route and
// sweep; the processors decrement the counters (keyRoute.done).
type keyRouter struct {
	vps    []*virtualPartition  // immutable
	keys   map[string]*keyRoute // owned by the reader goroutine
	free   []*keyRoute          // owned by the reader goroutine; swept routes for reuse
	sweepN int                  // owned by the reader goroutine; sweep when the map grows past this
}

// maxScan bounds how many virtual partitions a new key looks at for the least loaded one.
const maxScan = 256

func newKeyRouter(vps []*virtualPartition, maxInFlight int) *keyRouter {
	return &keyRouter{vps: vps, keys: map[string]*keyRoute{}, sweepN: max(2*maxInFlight, 1024)}
}

// route returns the route of key, counting one more message in flight on it.
func (r *keyRouter) route(key string) *keyRoute {
	kr := r.keys[key]
	if kr == nil {
		if len(r.keys) >= r.sweepN {
			r.sweep()
		}
		if n := len(r.free); n > 0 {
			kr = r.free[n-1]
			r.free = r.free[:n-1]
		} else {
			kr = &keyRoute{}
		}
		r.keys[key] = kr
	}
	if kr.inFlight.Load() == 0 {
		// Nothing of this key in flight: it may go anywhere. Only the reader increments
		// inFlight, so it stays at 0 until the Add below.
		kr.vp = r.leastLoaded(key)
		r.vps[kr.vp].keys.Add(1)
	}
	kr.inFlight.Add(1)
	return kr
}

// done counts one message of the route, routed to vp, as let go of. (vp is the message's, not
// kr.vp: once inFlight is 0 the reader may move the key.)
func (kr *keyRoute) done(vp *virtualPartition) {
	if kr.inFlight.Add(-1) == 0 {
		vp.keys.Add(-1)
	}
}

// leastLoaded picks the virtual partition for a key with nothing in flight: routeKey's choice
// unless one of the next maxScan has fewer keys in flight.
func (r *keyRouter) leastLoaded(key string) int {
	n := len(r.vps)
	best := routeKey(key, n)
	bestLoad := r.vps[best].keys.Load()
	for i, j := 1, best+1; i < min(n, maxScan) && bestLoad > 0; i, j = i+1, j+1 {
		if j == n {
			j = 0
		}
		if l := r.vps[j].keys.Load(); l < bestLoad {
			best, bestLoad = j, l
		}
	}
	return best
}

// sweep forgets keys with nothing in flight, so the map does not grow with the number of
// distinct keys ever seen (G8): it holds at most sweepN keys plus those in flight.
func (r *keyRouter) sweep() {
	for k, kr := range r.keys {
		if kr.inFlight.Load() == 0 {
			delete(r.keys, k)
			if len(r.free) < r.sweepN {
				r.free = append(r.free, kr)
			}
		}
	}
	if len(r.keys) >= r.sweepN/2 {
		r.sweepN *= 2 // mostly in flight: sweep less often
	}
}

func newVirtualPartition(idx int) *virtualPartition {
	vp := &virtualPartition{
		idx:  idx,
		q:    make([]*Message, 16),
		wake: make(chan struct{}, 1),
		kick: make(chan struct{}, 1),
	}
	vp.slowAt.Store(neverSlow)
	return vp
}

// neverSlow is slowAt before any slow handler: far enough in the past that the first slow
// one is not within eagerFor of it (0, monoNow's epoch, was: in a process's first eagerFor
// the first slow handler made its processor eager), and far enough from the limits of int64
// that no difference with it overflows.
const neverSlow = math.MinInt64 / 2

// enqueue appends ms, in order, without waking the processor: the reader hands over what it
// dispatched to vp since its last hand-over at once (readLoop.handOver), and signals wake
// when it wakes the processors (readLoop.wakeQueued). One lock per hand-over rather than per
// message: the lock's cache line, which the processor writes for every message it pops,
// crosses between the cores once per hand-over.
func (vp *virtualPartition) enqueue(ms []*Message) {
	vp.mu.Lock()
	if need := vp.n + len(ms); need > len(vp.q) {
		size := 2 * len(vp.q)
		for size < need {
			size *= 2
		}
		q := make([]*Message, size)
		for i := 0; i < vp.n; i++ {
			q[i] = vp.q[(vp.head+i)&(len(vp.q)-1)]
		}
		vp.q, vp.head = q, 0
	}
	mask := len(vp.q) - 1
	for _, m := range ms {
		vp.q[(vp.head+vp.n)&mask] = m
		vp.n++
	}
	vp.mu.Unlock()
}

// next returns the message to run next: a parked message whose retry is due (none once the
// queue is closed: a stop starts no retry), else the oldest queued message whose key has
// nothing parked; queued messages of a parked key join their key in the parking on the way.
// ok is false when there is nothing to run: closed then reports whether nothing more will
// come, and wait how long until the first parked message is due (0: none is).
func (vp *virtualPartition) next() (m *Message, wait time.Duration, ok, closed bool) {
	vp.mu.Lock()
	defer vp.mu.Unlock()
	m, wait, _ = vp.pick(nil)
	return m, wait, m != nil, m == nil && vp.closed
}

// nextIf is next for a batch that fills (batch_processor.go): it takes the message next would
// return only when b accepts it and otherwise leaves it where it is (refused). It never waits.
func (vp *virtualPartition) nextIf(b acceptor) (m *Message, refused, closed bool) {
	vp.mu.Lock()
	defer vp.mu.Unlock()
	m, _, refused = vp.pick(b)
	return m, refused, m == nil && !refused && vp.closed
}

// acceptor says whether a message may be taken (a filling batch).
type acceptor interface {
	accepts(m *Message) bool
}

// pick is next and nextIf under vp.mu: with a nil b it takes whatever next returns; else only
// what b accepts (refused: the message next in line was not accepted and stays).
func (vp *virtualPartition) pick(b acceptor) (m *Message, wait time.Duration, refused bool) {
	parked := vp.parked.active()
	if parked && !vp.closed && vp.popsUnchecked >= dueCheckEvery {
		vp.popsUnchecked = 0
		if m, _, refused = vp.takeParked(b, time.Now()); m != nil || refused {
			return m, 0, refused
		}
	}
	for vp.n > 0 {
		i := vp.head
		m = vp.q[i]
		joined := parked && vp.parked.join(m)
		if !joined && b != nil && !b.accepts(m) {
			return nil, 0, true
		}
		vp.q[i] = nil
		vp.head = (vp.head + 1) & (len(vp.q) - 1)
		vp.n--
		if joined {
			continue
		}
		vp.popsUnchecked++
		return m, 0, false
	}
	if parked && !vp.closed { // the queue is empty: what is parked is all there is to run
		vp.popsUnchecked = 0
		if m, wait, refused = vp.takeParked(b, time.Now()); m != nil || refused {
			return m, 0, refused
		}
	}
	return nil, wait, false
}

// takeParked takes the parked message due first if it is due at now and b (unless nil)
// accepts it; wait is how long until it is due when it is not.
func (vp *virtualPartition) takeParked(b acceptor, now time.Time) (m *Message, wait time.Duration, refused bool) {
	if m, wait = vp.parked.peek(now); m == nil {
		return nil, wait, false
	}
	if b != nil && !b.accepts(m) {
		return nil, 0, true
	}
	vp.parked.pop()
	return m, 0, false
}

// park puts m, failed with cause at since, back to wait for its retry until due (parking.go).
// It returns false, parking nothing, when m's partition is being revoked: checked under the
// lock that the revoke's removeIf takes after flagging the partition, so that no parked
// message outlives a revoke.
func (vp *virtualPartition) park(m *Message, due, since time.Time, cause error) bool {
	vp.mu.Lock()
	defer vp.mu.Unlock()
	if m.trk != nil && m.trk.Revoking() {
		return false
	}
	vp.parked.park(m, due, since, cause)
	return true
}

// joinParked parks m behind the parked messages of its key (in a batch, a message of a key
// whose earlier message was just parked for its retry: batch_processor.go). It returns false,
// parking nothing, when its key has nothing parked or its partition is being revoked.
func (vp *virtualPartition) joinParked(m *Message) bool {
	vp.mu.Lock()
	defer vp.mu.Unlock()
	if m.taken || (m.trk != nil && m.trk.Revoking()) {
		return false
	}
	return vp.parked.join(m)
}

// settle ends the turn of m, taken from the parking: the next message of its key is due, and
// the processor is woken for it (m may settle on a dead letter writer's goroutine).
func (vp *virtualPartition) settle(m *Message) {
	vp.mu.Lock()
	due := vp.parked.settle(m, time.Time{}) // due at once: before any time
	vp.mu.Unlock()
	if due {
		signal(vp.wake)
	}
}

// unpark takes out every parked message (a stop lets them go unfinished).
func (vp *virtualPartition) unpark() []*Message {
	vp.mu.Lock()
	defer vp.mu.Unlock()
	return vp.parked.removeAll()
}

// close lets the processor exit once the queue is drained.
func (vp *virtualPartition) close() {
	vp.mu.Lock()
	vp.closed = true
	vp.mu.Unlock()
	signal(vp.wake)
}

// removeIf drops the queued and parked messages for which drop returns true, keeping the
// order of the rest, and returns the dropped ones.
func (vp *virtualPartition) removeIf(drop func(*Message) bool) []*Message {
	vp.mu.Lock()
	defer vp.mu.Unlock()
	dropped := vp.parked.removeIf(drop)
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

// lookFor shows l the parked and queued messages it looks for (Work.Status), under the lock:
// one pass over the parking and over the queue, up to the last message l wants.
func (vp *virtualPartition) lookFor(l *lookup) {
	vp.mu.Lock()
	defer vp.mu.Unlock()
	vp.parked.lookFor(l, vp.idx)
	mask := len(vp.q) - 1
	for i := 0; i < vp.n && !l.complete(); i++ {
		if m := vp.q[(vp.head+i)&mask]; l.wants(m) {
			l.see(sighting{m: m, vp: vp.idx, waits: WaitQueued, ahead: i})
		}
	}
}

// handlerRan looks at a handler (or ProcessBatch) that ran from start to end: one that ran
// eagerAfter or longer is slow, and the second slow one within eagerFor makes the processor
// eager: the reader wakes it at every hand-over until eagerFor passes without one. A single
// one is more often a fast handler that the host or a GC pause stretched (110-210 a million
// messages in noop-s8).
func (vp *virtualPartition) handlerRan(start, end time.Time) {
	if end.Sub(start) < eagerAfter {
		return
	}
	at := int64(end.Sub(epoch))
	if at-vp.slowAt.Swap(at) < int64(eagerFor) {
		vp.eager.Store(true)
	}
}

// slowLately reports whether a handler of vp ran eagerAfter or longer within eagerFor: an
// eager processor stays so.
func (vp *virtualPartition) slowLately() bool {
	return monoNow()-vp.slowAt.Load() < int64(eagerFor)
}

// epoch is the start of monoNow's clock.
var epoch = time.Now()

// monoNow reads the monotonic clock alone, in nanoseconds since epoch (time.Now reads the
// wall clock as well).
func monoNow() int64 { return int64(time.Since(epoch)) }

// signal does a non-blocking send on a capacity-1 channel.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
