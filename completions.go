package zkafka

// Completions: what a partition's commit says beyond its offset, and what the partition's next
// owner does with it (G16). A commit names the oldest unfinished message read — the committed
// offset — and, in its metadata (metadata.go), which messages above it are finished. The next
// owner, after a rebalance or a restart, reads that metadata when the partition is assigned
// (offsetStore.priors) and does not run those messages again: the KReader records each as read
// and finished at once (KReader.skipFinished), so it still moves the committed offset.
//
// Invariant: a message is skipped only when a commit of this partition's log said it was
// finished. The first message the next owner reads must be the committed one, with the
// timestamp and leader epoch the commit recorded for it; otherwise (a recreated topic reusing
// offsets, an offset reset, a record deleted by retention) the metadata is ignored.

import "github.com/confluentinc/confluent-kafka-go/v2/kafka"

// recordID tells a record apart from another at the same offset of a recreated topic.
type recordID struct {
	stamp int64 // timestamp, Unix milliseconds
	epoch int32 // leader epoch, -1 when unknown
}

// recordOf is km's recordID.
func recordOf(km *kafka.Message) recordID {
	id := recordID{stamp: km.Timestamp.UnixMilli(), epoch: -1}
	if e := km.TopicPartition.LeaderEpoch; e != nil {
		id.epoch = *e
	}
	return id
}

// lastCommit is what was last committed for a partition.
type lastCommit struct {
	offset   int64
	md       string
	released bool
	valid    bool
}

// snapshot returns what to commit for the partition: the offset and, in c, the finished
// messages at and above it, and the suspects (poison.go); ok is false when there is nothing
// to commit: nothing finished yet, the partition revoked, or (unless released: the commit lets
// the partition go) nothing read or finished since the last snapshot.
//
// The offset is the oldest unfinished message read. When none is: the one after the last
// finished, with no completions; or, while the last owner's commit still lists finished
// messages further on (prior), the last finished message itself — the next owner reads it
// first, to check the commit is about its log, and skips it with the rest.
func (t *partitionTracker) snapshot(released bool) (offset int64, c *completions, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || (!t.changed && !released) {
		return 0, nil, false
	}
	t.changed = false
	t.marksSnapped = t.marksSet
	mask := uint64(len(t.offsets) - 1)
	var b runsBuilder
	switch {
	case t.head != t.tail:
		h := t.head & mask
		c = &completions{base: t.offsets[h], stamp: t.ids[h].stamp, epoch: t.ids[h].epoch, read: t.offsets[(t.tail-1)&mask]}
		t.appendRing(&b, c.base)
	case t.next < 0:
		return 0, nil, false
	case t.prior == nil:
		return t.next, nil, true
	default:
		c = &completions{base: t.next - 1, stamp: t.lastID.stamp, epoch: t.lastID.epoch, read: t.next - 1}
		b.add(1, true)
	}
	c.released = released
	c.suspects = t.suspectList(released)
	if t.prior != nil {
		t.prior.appendAfter(&b, c.read)
		c.suspects = t.prior.suspectsAfter(c.suspects, c.read)
	}
	c.runs = b.end()
	if t.head == t.tail && len(c.runs) == 2 && len(c.suspects) == 0 {
		return t.next, nil, true // the last commit says nothing of what was not read
	}
	return c.base, c, true
}

// touch makes the next snapshot take the partition even if nothing changed (a commit failed).
func (t *partitionTracker) touch() {
	t.mu.Lock()
	t.changed = true
	t.mu.Unlock()
}

// appendRing adds the ring's offsets from base, the oldest unfinished, to b. Offsets that were
// not read (gaps) count as unfinished. The caller holds mu.
func (t *partitionTracker) appendRing(b *runsBuilder, base int64) {
	mask := uint64(len(t.offsets) - 1)
	prev := base - 1
	for s := t.head; s != t.tail; s++ {
		i := s & mask
		off := t.offsets[i]
		b.add(uint64(off-prev-1), false)
		b.add(1, t.done[i])
		prev = off
	}
}

// runsBuilder builds the alternating run lengths of a completions from consecutive stretches
// of offsets, the first one unfinished (a first run of 0 when the first stretch is finished).
type runsBuilder struct {
	runs     []uint64
	run      uint64
	finished bool
}

// add appends n offsets, finished or not.
func (b *runsBuilder) add(n uint64, finished bool) {
	if n == 0 {
		return
	}
	if finished != b.finished {
		b.runs = append(b.runs, b.run)
		b.run, b.finished = 0, finished
	}
	b.run += n
}

// end returns the runs, the trailing unfinished stretch left out.
func (b *runsBuilder) end() []uint64 {
	if b.finished {
		b.runs = append(b.runs, b.run)
		b.run, b.finished = 0, false
	}
	return b.runs
}

// prior is what the last commit of a partition said, as its next owner reads the partition.
// Its tracker's mu guards it.
type prior struct {
	c        *completions
	verified bool             // the first message read was the commit's base record
	run      int              // index in c.runs of the run that starts at runStart
	runStart int64            // first offset of that run
	deaths   map[int64]uint32 // the commit's suspects (poison.go)
	until    int64            // the last offset the commit says anything about
}

func newPrior(c *completions) *prior {
	p := &prior{c: c, runStart: c.base, until: c.base - 1}
	for _, r := range c.runs {
		p.until += int64(r)
	}
	if !c.released {
		p.until = max(p.until, c.read) // any of those may have been in a handler (poison.go)
	}
	for _, s := range c.suspects {
		if p.deaths == nil {
			p.deaths = make(map[int64]uint32, len(c.suspects))
		}
		p.deaths[s.offset] = s.deaths
		p.until = max(p.until, s.offset)
	}
	return p
}

// readVerdict is what the partition's tracker says of a message read.
type readVerdict struct {
	skip     bool // finished before (the tracker finished it): do not run it
	again    bool // read before in this assignment: not recorded, not run
	mismatch bool // the last commit is not about this log: it is ignored
	// careful: the message may have been in a handler when the process died (poison.go);
	// deaths is how often, in a row, the last commits said it was.
	careful bool
	deaths  uint32
	// unrecorded: the message runs only once a commit says it was read (poison.go).
	unrecorded bool
}

// check judges the message read at offset with record id; last reports that the commit says
// nothing of later offsets. Offsets grow from one call to the next.
func (p *prior) check(offset int64, id recordID) (v readVerdict, last bool) {
	if !p.verified {
		if offset != p.c.base || id != (recordID{stamp: p.c.stamp, epoch: p.c.epoch}) {
			return readVerdict{mismatch: true}, true
		}
		p.verified = true
	}
	runs := p.c.runs
	for p.run < len(runs) && offset-p.runStart >= int64(runs[p.run]) {
		p.runStart += int64(runs[p.run])
		p.run++
	}
	if p.run < len(runs) && p.run%2 == 1 {
		v.skip = true
	} else {
		v.deaths = p.deaths[offset]
		v.careful = v.deaths > 0 || (!p.c.released && offset <= p.c.read)
	}
	return v, offset >= p.until
}

// appendAfter adds to b what the last commit says of the offsets after last (the last one
// read): the stretches it lists as finished, and the unfinished ones between them.
func (p *prior) appendAfter(b *runsBuilder, last int64) {
	runs := p.c.runs
	start := p.runStart
	for i := p.run; i < len(runs); i++ {
		end := start + int64(runs[i])
		if end > last+1 {
			b.add(uint64(end-max(start, last+1)), i%2 == 1)
		}
		start = end
	}
}

// suspectsAfter appends the commit's suspects after last (the last offset read).
func (p *prior) suspectsAfter(out []suspect, last int64) []suspect {
	for _, s := range p.c.suspects {
		if s.offset > last {
			out = append(out, s)
		}
	}
	return out
}
