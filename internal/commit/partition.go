package commit

import (
	"sync"
	"sync/atomic"
	"time"
)

// Partition is the commit state of one assigned partition: its ordering (order.go), its
// history (history.go) and its suspects (suspects.go). The reader records each message read
// (Read); any goroutine finishes one (Finish); the committer takes Snapshots.
type Partition struct {
	topic      string    // immutable
	partition  int32     // immutable
	owner      *Tracker  // immutable
	assignedAt time.Time // immutable: when the partition was assigned (the Partition made)

	mu      sync.Mutex
	order   partitionTracker // guarded by mu
	history history          // guarded by mu
	sus     suspicion        // guarded by mu
	// closed: revoked (Reset or Remove let go of it); later completions are ignored. Set under
	// mu, read under mu or, by Tracker.GetAgain, without it.
	closed  atomic.Bool
	changed bool       // guarded by mu: read or finished since the last snapshot
	last    lastCommit // guarded by mu: the last commit written (snapshot.go)
	movedAt time.Time  // guarded by mu: when take last handed on a moved offset
	// seenRead is the highest offset read as the last Status saw it, and seenReadAt when it
	// saw it change (both guarded by mu): when the read position last moved, late by at most
	// the time between two Status calls, at no cost to a read.
	seenRead   int64
	seenReadAt time.Time

	dirty    atomic.Bool  // the offset to store moved since the last take
	revoking atomic.Bool  // a revoke started: waiting messages let go instead of waiting on
	acked    atomic.Int64 // the last offset a commit set; -1: none seen since the assignment
	recorded atomic.Int64 // the highest offset a commit written says was read (suspects.go)
}

func newPartition(owner *Tracker, topic string, partition int32) *Partition {
	p := &Partition{
		topic:      topic,
		partition:  partition,
		owner:      owner,
		assignedAt: time.Now(),
		order:      newPartitionTracker(),
		seenRead:   -1,
	}
	p.acked.Store(-1)
	p.recorded.Store(-1)
	return p
}

// BelongsTo reports whether p is one of t's partitions.
func (p *Partition) BelongsTo(t *Tracker) bool { return p.owner == t }

// TopicPartition returns the partition's topic and number.
func (p *Partition) TopicPartition() (string, int32) { return p.topic, p.partition }

// Read records the message read at offset, record id, and returns its sequence number (for
// Finish) and what becomes of it (outcome.go). A message the history says is finished is
// finished at once (Skip).
func (p *Partition) Read(offset int64, id Record) (uint64, Outcome) {
	p.mu.Lock()
	seq, ok := p.order.add(offset, id)
	if !ok {
		p.mu.Unlock()
		return 0, Outcome{action: Drop}
	}
	p.changed = true
	if p.history.empty() && !p.sus.window {
		p.mu.Unlock()
		return seq, Outcome{}
	}
	o := p.history.judge(offset, id)
	switch o.action {
	case Skip:
		p.finishLocked(seq)
	case Hold:
		if o.deaths > 0 {
			p.sus.add(offset, o.deaths, false)
		}
	case Process:
		if p.sus.window {
			o.action = AwaitRecord
		}
	}
	p.mu.Unlock()
	return seq, o
}

// Finish marks the message with sequence number seq finished and moves the offset to store if
// it can. It reports whether that offset moved.
func (p *Partition) Finish(seq uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.finishLocked(seq)
}

// finishLocked is Finish with mu held.
func (p *Partition) finishLocked(seq uint64) bool {
	if p.closed.Load() || !p.order.holds(seq) {
		return false
	}
	offset, moved := p.order.finish(seq)
	p.changed = true
	p.sus.forget(offset)
	if moved && !p.dirty.Swap(true) {
		p.owner.dirty.Store(true)
	}
	return moved
}

// take returns the offset to store and clears the dirty flag; ok is false when there is
// nothing new to store. now is when the caller stores: the time the offset moved, as Status
// tells it.
func (p *Partition) take(now time.Time) (offset int64, ok bool) {
	if !p.dirty.Swap(false) {
		return 0, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() || p.order.next < 0 {
		return 0, false
	}
	p.movedAt = now
	return p.order.next, true
}

// Status is what a status page reads of a partition, at one moment.
type Status struct {
	Stored     int64     // the offset to store: 1 + the finished prefix; -1: nothing finished yet
	Oldest     int64     // the oldest unfinished offset; -1: nothing unfinished
	Unfinished int       // messages read and not finished
	Committed  int64     // the last offset a commit set; -1: none seen since the assignment
	MovedAt    time.Time // when the offset to store last moved and was taken for a store
	AssignedAt time.Time // when the partition was assigned
	LastRead   int64     // the highest offset read in the assignment; -1: none
	ReadAt     time.Time // when a Status first saw LastRead (zero: nothing read)
}

// Status reads the partition under its lock, at now; it counts the unfinished messages, so it
// costs one step per message read since the oldest unfinished one.
func (p *Partition) Status(now time.Time) Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.order.lastRead != p.seenRead {
		p.seenRead, p.seenReadAt = p.order.lastRead, now
	}
	s := Status{Stored: p.order.next, Oldest: -1, Committed: p.acked.Load(), MovedAt: p.movedAt, AssignedAt: p.assignedAt,
		LastRead: p.order.lastRead, ReadAt: p.seenReadAt}
	if !p.order.empty() {
		s.Oldest, _ = p.order.oldest()
	}
	s.Unfinished = p.order.unfinished()
	return s
}

// SetCommitted notes offset, set by a commit the caller wrote or saw, for Status.
func (p *Partition) SetCommitted(offset int64) { p.acked.Store(offset) }

// close stops the partition: later completions are ignored (it was revoked).
func (p *Partition) close() {
	p.mu.Lock()
	p.closed.Store(true)
	p.mu.Unlock()
}

// SetRevoking flags the partition as being revoked.
func (p *Partition) SetRevoking() { p.revoking.Store(true) }

// Revoking reports whether the partition is being (or was) revoked.
func (p *Partition) Revoking() bool { return p.revoking.Load() }

// Closed reports whether the partition was revoked.
func (p *Partition) Closed() bool { return p.closed.Load() }

// settle gives p what its assignment learnt of the partition's last commit, h, and what this
// reader finished of it before, w (nil: nothing).
func (p *Partition) settle(h Handover, w *ownWork) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.history = newHistory(h, w, time.Now())
	p.sus.open(h)
}

// finishedWork returns what p's assignment finished, and what it was given of earlier ones
// and had not read past; nil when nothing. p is closed or being removed.
func (p *Partition) finishedWork(now time.Time) *ownWork {
	p.mu.Lock()
	defer p.mu.Unlock()
	o, own := &p.order, p.history.own
	if o.firstRead < 0 || o.next <= o.firstRead {
		return own
	}
	w := &ownWork{from: o.firstRead, to: o.next, at: now, above: o.finishedAbove(nil)}
	if own != nil {
		w.earlier = &ownWork{from: own.from, to: own.to, above: own.above, at: own.at} // one level kept
	}
	return w
}
