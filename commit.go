package zkafka

// The commit tracker decides which offset of a Kafka partition may be stored for commit.
//
// Invariant: for every assigned partition, the stored offset is 1 + the highest offset below
// which every message read from that partition is finished. A message that is read but not
// finished (queued, processing, waiting for its dead letter acknowledgement, or abandoned by a
// cancel) holds back the stored offset of its partition, whatever happens to later messages.
//
// Each partition keeps a ring of the offsets read, in read order, with a finished flag. A
// message carries its sequence number in the ring. Finishing sets the flag; while the oldest
// entry is finished it is popped and the stored offset moves to its offset + 1. Cost: O(1)
// amortised per message and no allocation once the ring has grown to the number of unfinished
// messages. Gaps in offsets (compaction, transaction markers) need no care: only offsets that
// were read are in the ring.
//
// The ring also says which messages above the oldest unfinished one are finished: a commit
// carries them in its metadata (completions.go, metadata.go), so that they are not run again
// by the partition's next owner; prior holds what the last commit said, for skipping.

import (
	"sync"
	"sync/atomic"
	"time"
)

// partitionTracker tracks one assigned partition.
type partitionTracker struct {
	topic     string
	partition int32

	mu sync.Mutex
	readRing
	next   int64    // offset to store: last popped + 1; -1 while nothing popped
	lastID recordID // the record of the last popped entry, at offset next - 1
	closed bool     // revoked: further completions are ignored
	// lastRead is the highest offset read. librdkafka, seldom, delivers a partition's
	// messages again from an earlier offset after a pause (seen after an assignment without
	// a committed offset): those are not recorded twice (priorAgain).
	lastRead int64
	// firstRead is the first offset read in the assignment (-1: none yet); own is what this
	// reader finished of the partition in its last assignment (ownwork.go), nil: nothing.
	firstRead int64
	own       *ownWork
	changed   bool // read or finished since the last snapshot (completions.go)
	// prior is what the partition's last commit said was finished (completions.go); nil:
	// nothing (left) to skip.
	prior *prior
	// suspects are the unfinished messages that were, or are, in a handler when the process
	// died (poison.go): by offset, the deaths so far, and whether one is in a handler now.
	suspects map[int64]suspectState
	// marksSet counts the suspects that entered a handler; marksSnapped is marksSet at the
	// last snapshot, marksCommitted at the last successful commit (offsetStore.commitMark).
	marksSet, marksSnapped, marksCommitted uint64
	// window: the last owner died, or none committed (firstOnly) (poison.go); open from
	// assignedAt until a periodic commit commitEvery later, or the first commit. recorded is
	// the highest offset a commit says was read.
	window, firstOnly bool
	assignedAt        time.Time // when the tracker was made: the partition assigned
	recorded          atomic.Int64
	// committed is the last commit written (completions.go); guarded by offsetStore.commitMu.
	committed lastCommit
	// revoking is set when a revoke starts: messages still waiting (delay, breaker, dead
	// letter backoff) let go instead of waiting on.
	revoking atomic.Bool
	dirty    atomic.Bool
	owner    *commitTracker

	// For Work.Status (with assignedAt, when the tracker was made): when take last handed on
	// a moved offset (under mu), and the last offset a commit of it set (-1: none seen since
	// the assignment).
	movedAt time.Time
	acked   atomic.Int64
	// seenRead is lastRead as the last statusSnapshot saw it and seenReadAt when it saw it
	// change (under mu): when the read position last moved, late by at most the time between
	// two Status calls (the stuck watch takes one every stuckCheckEvery), at no cost to a read.
	seenRead   int64
	seenReadAt time.Time
}

func newPartitionTracker(owner *commitTracker, topic string, partition int32) *partitionTracker {
	t := &partitionTracker{
		topic:      topic,
		partition:  partition,
		readRing:   readRing{offsets: make([]int64, 64), done: make([]bool, 64), ids: make([]recordID, 64)},
		next:       -1,
		lastRead:   -1,
		firstRead:  -1,
		seenRead:   -1,
		owner:      owner,
		assignedAt: time.Now(),
	}
	t.acked.Store(-1)
	t.recorded.Store(-1)
	return t
}

// addRecord records the message read at offset, record id, and returns its sequence number
// and what the partition's last commit says of it (completions.go): a message it says is
// finished is finished at once (skip).
func (t *partitionTracker) addRecord(offset int64, id recordID) (uint64, readVerdict) {
	t.mu.Lock()
	if offset <= t.lastRead {
		t.mu.Unlock()
		return 0, readVerdict{again: true}
	}
	t.lastRead = offset
	if t.firstRead < 0 {
		t.firstRead = offset
	}
	seq := t.push(offset, id)
	t.changed = true
	if t.prior == nil && !t.window && t.own == nil {
		t.mu.Unlock()
		return seq, readVerdict{}
	}
	v := t.judge(seq, offset, id)
	if t.own != nil {
		var finish, forget bool
		if v, finish, forget = t.own.judge(offset, v); finish {
			t.finishLocked(seq)
		}
		if forget {
			t.own = nil
		}
	}
	t.mu.Unlock()
	return seq, v
}

// judge is what the partition's last commit (prior) and its window say of the message just
// recorded at seq. The caller holds mu.
func (t *partitionTracker) judge(seq uint64, offset int64, id recordID) readVerdict {
	if t.prior == nil {
		return readVerdict{unrecorded: t.window}
	}
	v, last := t.prior.check(offset, id)
	v.unrecorded = t.window && !v.skip
	switch {
	case v.skip:
		t.finishLocked(seq)
	case v.deaths > 0:
		t.suspect(offset, v.deaths, false)
	}
	if last {
		t.prior = nil
	}
	return v
}

// finish marks the message with sequence number seq finished and moves the stored offset if
// it can. It reports whether the stored offset moved.
func (t *partitionTracker) finish(seq uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.finishLocked(seq)
}

// finishLocked is finish with mu held.
func (t *partitionTracker) finishLocked(seq uint64) bool {
	if t.closed || seq < t.head || seq >= t.tail {
		return false
	}
	mask := uint64(len(t.offsets) - 1)
	t.done[seq&mask] = true
	t.changed = true
	moved := false
	for t.head != t.tail && t.done[t.head&mask] {
		t.next = t.offsets[t.head&mask] + 1
		t.done[t.head&mask] = false
		t.head++
		moved = true
	}
	if moved {
		t.lastID = t.ids[(t.head-1)&mask]
	}
	if len(t.suspects) > 0 {
		delete(t.suspects, t.offsets[seq&mask])
	}
	if moved && !t.dirty.Swap(true) {
		t.owner.dirty.Store(true)
	}
	return moved
}

// take returns the offset to store and clears the dirty flag; ok is false when there is
// nothing new to store. now is when the caller stores: the time the offset moved, as
// Work.Status tells it.
func (t *partitionTracker) take(now time.Time) (offset int64, ok bool) {
	if !t.dirty.Swap(false) {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.next < 0 {
		return 0, false
	}
	t.movedAt = now
	return t.next, true
}

// trackerSnapshot is what Work.Status reads of a partition tracker, at one moment.
type trackerSnapshot struct {
	stored     int64 // the offset to store: 1 + the finished prefix; -1: nothing finished yet
	oldest     int64 // the oldest unfinished offset; -1: nothing unfinished
	unfinished int   // messages read and not finished
	committed  int64
	movedAt    time.Time
	assignedAt time.Time
	lastRead   int64     // the highest offset read in the assignment; -1: none
	readAt     time.Time // when lastRead was first seen (zero: nothing read)
}

// statusSnapshot reads the tracker under its lock for Work.Status, taken at now; it counts the
// unfinished messages, so it costs one step per message read since the oldest unfinished one.
func (t *partitionTracker) statusSnapshot(now time.Time) trackerSnapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lastRead != t.seenRead {
		t.seenRead, t.seenReadAt = t.lastRead, now
	}
	s := trackerSnapshot{stored: t.next, oldest: -1, committed: t.acked.Load(), movedAt: t.movedAt, assignedAt: t.assignedAt,
		lastRead: t.lastRead, readAt: t.seenReadAt}
	mask := uint64(len(t.offsets) - 1)
	if t.head != t.tail {
		s.oldest = t.offsets[t.head&mask]
	}
	for seq := t.head; seq != t.tail; seq++ {
		if !t.done[seq&mask] {
			s.unfinished++
		}
	}
	return s
}

// close stops the tracker: later completions are ignored (the partition was revoked).
func (t *partitionTracker) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
}

// isRevoking reports whether the partition is being (or was) revoked.
func (t *partitionTracker) isRevoking() bool { return t.revoking.Load() }

// isClosed reports whether the partition was revoked.
func (t *partitionTracker) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// tpKey identifies a topic partition.
type tpKey struct {
	topic     string
	partition int32
}

// commitTracker holds the trackers of every assigned partition of one reader.
type commitTracker struct {
	mu    sync.RWMutex
	byTP  map[tpKey]*partitionTracker
	dirty atomic.Bool // some tracker has an offset to store
	// own is what was finished of the partitions removed (revoked), for when they come back
	// (ownwork.go); guarded by mu.
	own map[tpKey]*ownWork
	// pending holds, for the partitions whose handover is pending (handover.pending), what
	// this reader finished of them before (nil: nothing), until settleLate reads it;
	// pendingN counts them. Guarded by mu.
	pending  map[tpKey]*ownWork
	pendingN atomic.Int32
}

func newCommitTracker() *commitTracker {
	return &commitTracker{byTP: map[tpKey]*partitionTracker{}, own: map[tpKey]*ownWork{}, pending: map[tpKey]*ownWork{}}
}

// get returns the tracker of a partition, creating it on first use.
func (c *commitTracker) get(topic string, partition int32) *partitionTracker {
	k := tpKey{topic, partition}
	c.mu.RLock()
	t := c.byTP[k]
	c.mu.RUnlock()
	if t != nil {
		return t
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t = c.byTP[k]; t == nil {
		t = newPartitionTracker(c, topic, partition)
		c.byTP[k] = t
	}
	return t
}

// lookup returns the tracker of a partition, nil when it has none.
func (c *commitTracker) lookup(k tpKey) *partitionTracker {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byTP[k]
}

// reset replaces the tracker of a partition with a fresh one (the partition was assigned),
// which skips what the last commit says is finished (h).
func (c *commitTracker) reset(topic string, partition int32, h handover) {
	k := tpKey{topic, partition}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.byTP[k]; old != nil {
		old.close()
	}
	t := newPartitionTracker(c, topic, partition)
	w := c.own[k]
	delete(c.own, k)
	c.dropPending(k)
	if h.pending {
		c.pending[k] = w
		c.pendingN.Add(1)
	} else {
		settle(t, h, w)
	}
	c.byTP[k] = t
}

// settle gives the new tracker t what its assignment learnt of the partition's last commit,
// h, and what this reader finished of it before, w (nil: nothing).
func settle(t *partitionTracker, h handover, w *ownWork) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prior = h.prior
	if h.knowsCommitted && w.usable(h.committed, time.Now()) {
		t.own = w
	}
	if h.window {
		t.window, t.firstOnly = true, h.firstOnly
	}
}

// takePending returns, once, what this reader finished before of the partition of t (nil:
// nothing), when t's handover is pending (handover.pending): ok is false otherwise.
func (c *commitTracker) takePending(t *partitionTracker) (w *ownWork, ok bool) {
	k := tpKey{t.topic, t.partition}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byTP[k] != t {
		return nil, false
	}
	return c.dropPending(k)
}

// dropPending removes k from the pending handovers and returns what it held; ok is false
// when k was not pending. The caller holds mu.
func (c *commitTracker) dropPending(k tpKey) (w *ownWork, ok bool) {
	if w, ok = c.pending[k]; ok {
		delete(c.pending, k)
		c.pendingN.Add(-1)
	}
	return w, ok
}

// markRevoking flags the trackers of partitions about to be revoked.
func (c *commitTracker) markRevoking(keys []tpKey) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, k := range keys {
		if t := c.byTP[k]; t != nil {
			t.revoking.Store(true)
		}
	}
}

// remove closes and forgets the tracker of a partition (the partition was revoked).
func (c *commitTracker) remove(topic string, partition int32) {
	k := tpKey{topic, partition}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.byTP[k]; old != nil {
		old.close()
		delete(c.byTP, k)
		if w, ok := c.dropPending(k); ok { // it read nothing: what it was to be given is kept
			old.mu.Lock()
			old.own = w
			old.mu.Unlock()
		}
		now := time.Now()
		for k, w := range c.own {
			if now.Sub(w.at) >= ownWorkMaxAge {
				delete(c.own, k)
			}
		}
		if w := newOwnWork(old, now); w != nil {
			c.own[k] = w
		}
	}
}

// trackers returns the trackers of the partitions keep accepts (every one when keep is nil).
func (c *commitTracker) trackers(keep func(tpKey) bool) []*partitionTracker {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*partitionTracker, 0, len(c.byTP))
	for k, t := range c.byTP {
		if keep == nil || keep(k) {
			out = append(out, t)
		}
	}
	return out
}

// storable collects the offsets that moved since the last call, one per partition, filtered
// by keep when keep is not nil.
func (c *commitTracker) storable(keep func(tpKey) bool) []storedOffset {
	if keep == nil && !c.dirty.Swap(false) {
		return nil
	}
	now := time.Now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []storedOffset
	for k, t := range c.byTP {
		if keep != nil && !keep(k) {
			continue
		}
		if off, ok := t.take(now); ok {
			out = append(out, storedOffset{tpKey: k, offset: off})
		}
	}
	return out
}

// storedOffset is an offset ready to be stored for a partition.
type storedOffset struct {
	tpKey
	offset int64
}

// readRing is a partition tracker's ring of the messages read and not yet popped, by sequence
// number: their offsets, finished flags and records. Its length is a power of two. The
// tracker's mu guards it.
type readRing struct {
	offsets []int64
	done    []bool
	ids     []recordID
	head    uint64 // sequence number of the oldest unfinished entry
	tail    uint64 // sequence number the next read message gets
}

// push appends the message read at offset, record id, growing the ring when it is full, and
// returns its sequence number.
func (r *readRing) push(offset int64, id recordID) uint64 {
	if r.tail-r.head == uint64(len(r.offsets)) {
		r.grow()
	}
	seq := r.tail
	i := seq & uint64(len(r.offsets)-1)
	r.offsets[i], r.done[i], r.ids[i] = offset, false, id
	r.tail++
	return seq
}

// grow doubles the ring, keeping entries at their sequence positions.
func (r *readRing) grow() {
	n := len(r.offsets)
	offsets := make([]int64, 2*n)
	done := make([]bool, 2*n)
	ids := make([]recordID, 2*n)
	mask := uint64(2*n - 1)
	old := uint64(n - 1)
	for s := r.head; s != r.tail; s++ {
		offsets[s&mask] = r.offsets[s&old]
		done[s&mask] = r.done[s&old]
		ids[s&mask] = r.ids[s&old]
	}
	r.offsets, r.done, r.ids = offsets, done, ids
}
