// Package commit decides which offset of a Kafka partition may be committed, and what a
// commit says beyond its offset.
//
// Invariant: for every assigned partition, the offset to store is 1 + the highest offset
// below which every message read from that partition is finished, and no commit lists an
// unfinished message as finished. A message that is read but not finished (queued,
// processing, waiting for its dead letter acknowledgement, or abandoned by a cancel) holds
// back the offset of its partition, whatever happens to later messages. A message is
// finished without running only when its partition's history (history.go) says it was
// finished before: by an earlier owner, as a commit of this log says, or by this reader in
// its last assignment of the partition.
//
// The parts, each in its file:
//
//   - order.go: the ordering of one partition, a ring of the offsets read with finished flags;
//   - history.go: what was finished of a partition before this assignment read it, and the
//     Handover an assignment learns from the partition's last commit;
//   - suspects.go: the poison-pill suspects and window that ride on the commits;
//   - outcome.go: what becomes of a message read, one Outcome;
//   - partition.go: Partition, the three above under one lock;
//   - snapshot.go: what a commit of a partition says, and how it ended;
//   - metadata.go: the commit metadata's codec.
//
// The caller (the root package's KReader and offset store) talks to Kafka; this package
// never does.
package commit

import (
	"sync"
	"sync/atomic"
	"time"
)

// key identifies a topic partition.
type key struct {
	topic     string
	partition int32
}

// Tracker holds the Partitions of every partition assigned to one reader, and what the reader
// finished of the partitions it lost (for when they come back).
type Tracker struct {
	mu    sync.RWMutex
	parts map[key]*Partition // guarded by mu
	dirty atomic.Bool        // atomic: some Partition has an offset to store
	// own is what was finished of the partitions removed (revoked), for when they come back
	// (history.go); guarded by mu.
	own map[key]*ownWork
	// pending holds, for the partitions whose handover is pending (PendingHandover), what
	// this reader finished of them before (nil: nothing), until SettleLate reads it; guarded
	// by mu. pendingN counts them (atomic).
	pending  map[key]*ownWork
	pendingN atomic.Int32
}

// NewTracker returns a Tracker without partitions.
func NewTracker() *Tracker {
	return &Tracker{parts: map[key]*Partition{}, own: map[key]*ownWork{}, pending: map[key]*ownWork{}}
}

// Get returns the Partition of a partition, creating it on first use.
func (c *Tracker) Get(topic string, partition int32) *Partition {
	k := key{topic, partition}
	c.mu.RLock()
	p := c.parts[k]
	c.mu.RUnlock()
	if p != nil {
		return p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p = c.parts[k]; p == nil {
		p = newPartition(c, topic, partition)
		c.parts[k] = p
	}
	return p
}

// GetAgain is Get for a caller that had last, from Get or GetAgain: last itself, without the
// lock, while it is the Partition of topic and partition and still the Tracker's (Reset and
// Remove close a Partition before they let go of it). A reader's messages come in runs of
// one partition, and a read lock per message was 3 % of the CPU of a noop handler.
func (c *Tracker) GetAgain(last *Partition, topic string, partition int32) *Partition {
	if last != nil && last.partition == partition && last.topic == topic && !last.closed.Load() {
		return last
	}
	return c.Get(topic, partition)
}

// Lookup returns the Partition of a partition, nil when it has none.
func (c *Tracker) Lookup(topic string, partition int32) *Partition {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.parts[key{topic, partition}]
}

// Reset replaces the Partition of a partition with a fresh one (the partition was
// assigned), whose history is what h says of the last commit and what this reader finished
// of the partition before. When h is pending, that waits for SettleLate.
func (c *Tracker) Reset(topic string, partition int32, h Handover) {
	k := key{topic, partition}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.parts[k]; old != nil {
		old.close()
	}
	p := newPartition(c, topic, partition)
	w := c.own[k]
	delete(c.own, k)
	c.dropPending(k)
	if h.pending {
		c.pending[k] = w
		c.pendingN.Add(1)
	} else {
		p.settle(h, w)
	}
	c.parts[k] = p
}

// Pending reports whether some partition's handover waits for SettleLate.
func (c *Tracker) Pending() bool { return c.pendingN.Load() != 0 }

// SettleLate gives p, before its first message is recorded, its history when its handover
// was pending: read returns the Handover read late. It does nothing for a partition not
// pending.
func (c *Tracker) SettleLate(p *Partition, read func() Handover) {
	if w, ok := c.takePending(p); ok {
		p.settle(read(), w)
	}
}

// takePending returns, once, what this reader finished before of p's partition (nil:
// nothing), when p's handover is pending: ok is false otherwise.
func (c *Tracker) takePending(p *Partition) (w *ownWork, ok bool) {
	k := key{p.topic, p.partition}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.parts[k] != p {
		return nil, false
	}
	return c.dropPending(k)
}

// dropPending removes k from the pending handovers and returns what it held; ok is false
// when k was not pending. The caller holds mu.
func (c *Tracker) dropPending(k key) (w *ownWork, ok bool) {
	if w, ok = c.pending[k]; ok {
		delete(c.pending, k)
		c.pendingN.Add(-1)
	}
	return w, ok
}

// MarkRevoking flags the Partition of a partition about to be revoked.
func (c *Tracker) MarkRevoking(topic string, partition int32) {
	if p := c.Lookup(topic, partition); p != nil {
		p.SetRevoking()
	}
}

// Remove closes and forgets the Partition of a partition (the partition was revoked), and
// keeps what it finished for when it comes back.
func (c *Tracker) Remove(topic string, partition int32) {
	k := key{topic, partition}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.parts[k]
	if old == nil {
		return
	}
	old.close()
	delete(c.parts, k)
	if w, ok := c.dropPending(k); ok { // it read nothing: what it was to be given is kept
		old.mu.Lock()
		old.history.own = w
		old.mu.Unlock()
	}
	now := time.Now()
	for k, w := range c.own {
		if now.Sub(w.at) >= ownWorkMaxAge {
			delete(c.own, k)
		}
	}
	if w := old.finishedWork(now); w != nil {
		c.own[k] = w
	}
}

// Partitions returns the Partitions of the partitions keep accepts (every one when keep is
// nil).
func (c *Tracker) Partitions(keep func(topic string, partition int32) bool) []*Partition {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*Partition, 0, len(c.parts))
	for k, p := range c.parts {
		if keep == nil || keep(k.topic, k.partition) {
			out = append(out, p)
		}
	}
	return out
}

// Stored is an offset ready to be stored for a partition.
type Stored struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Storable collects the offsets to store that moved since the last call, one per partition,
// filtered by keep when keep is not nil.
func (c *Tracker) Storable(keep func(topic string, partition int32) bool) []Stored {
	if keep == nil && !c.dirty.Swap(false) {
		return nil
	}
	now := time.Now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []Stored
	for k, p := range c.parts {
		if keep != nil && !keep(k.topic, k.partition) {
			continue
		}
		if off, ok := p.take(now); ok {
			out = append(out, Stored{Topic: k.topic, Partition: k.partition, Offset: off})
		}
	}
	return out
}
