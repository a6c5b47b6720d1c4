package commit

// What a commit of a partition says: its offset, the oldest unfinished message read, and in its
// metadata (metadata.go) the finished messages above it and the suspects. The caller commits
// Snapshots one at a time (a later commit of a partition never carries older state) and
// tells the Partition how each ended: Committed, Unchanged (nothing to send) or Touch (failed).

// Commit is what to commit for a partition, from Snapshot.
type Commit struct {
	Offset    int64  // the offset to commit
	Metadata  string // its metadata; "": none
	Truncated bool   // the metadata had no room for every finished message above Offset

	released bool   // the commit lets the partition go (a revoke, a stop, Close)
	read     int64  // the highest offset it says was read
	marks    uint64 // the suspects' marks it covers (Mark)
}

// lastCommit is what was last committed for a partition.
type lastCommit struct {
	offset   int64
	md       string
	released bool
	valid    bool
}

func (c Commit) last() lastCommit {
	return lastCommit{offset: c.Offset, md: c.Metadata, released: c.released, valid: true}
}

// Snapshot returns what to commit for the partition, with metadata of at most limit bytes (0:
// none); ok is false when there is nothing to commit: nothing finished yet, the partition
// revoked, or (unless released: the commit lets the partition go) nothing read or finished
// since the last snapshot.
func (p *Partition) Snapshot(released bool, limit int) (c Commit, ok bool) {
	offset, cs, marks, ok := p.snapshot(released)
	if !ok {
		return Commit{}, false
	}
	c = Commit{Offset: offset, released: released, read: offset - 1, marks: marks}
	if cs != nil {
		c.read = cs.Read
		if limit > 0 {
			c.Metadata, c.Truncated = cs.Encode(limit) // outside mu: reads and finishes go on
		}
	}
	return c, true
}

// Unchanged reports whether c says what the last commit written said; then it need not be
// sent, and counts as written.
func (p *Partition) Unchanged(c Commit) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.last() != p.last {
		return false
	}
	p.sus.marksCommitted = c.marks
	p.recorded.Store(c.read)
	return true
}

// Committed records that c, a Snapshot of the partition, was written.
func (p *Partition) Committed(c Commit) {
	p.recorded.Store(c.read)
	p.acked.Store(c.Offset)
	p.mu.Lock()
	p.last = c.last()
	p.sus.marksCommitted = c.marks
	if p.sus.firstOnly {
		p.sus.window = false
	}
	p.mu.Unlock()
}

// Touch makes the next Snapshot take the partition even if nothing changed (a commit failed).
func (p *Partition) Touch() {
	p.mu.Lock()
	p.changed = true
	p.mu.Unlock()
}

// snapshot is Snapshot before the encoding: the offset and, in c, the finished messages at and
// above it and the suspects; marks counts the marks it covers.
//
// The offset is the oldest unfinished message read. When none is: the one after the last
// finished, with no completions; or, while the last owner's commit still lists finished
// messages further on (history.speaksPast), the last finished message itself — the next
// owner reads it first, to check the commit is about its log, and skips it with the rest.
func (p *Partition) snapshot(released bool) (offset int64, c *Completions, marks uint64, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() || (!p.changed && !released) {
		return 0, nil, 0, false
	}
	p.changed = false
	marks = p.sus.marksSet
	o := &p.order
	var b runsBuilder
	switch {
	case !o.empty():
		base, id := o.oldest()
		c = &Completions{Base: base, Stamp: id.Stamp, Epoch: id.Epoch, Read: o.newest()}
		o.appendRuns(&b, base)
	case o.next < 0:
		return 0, nil, marks, false
	case !p.history.speaksPast():
		return o.next, nil, marks, true
	default:
		c = &Completions{Base: o.next - 1, Stamp: o.lastID.Stamp, Epoch: o.lastID.Epoch, Read: o.next - 1}
		b.add(1, true)
	}
	c.Released = released
	c.Suspects = p.history.appendAfter(&b, p.sus.list(released), c.Read)
	c.Runs = b.end()
	if o.empty() && len(c.Runs) == 2 && len(c.Suspects) == 0 {
		return o.next, nil, marks, true // the last commit says nothing of what was not read
	}
	return c.Base, c, marks, true
}

// runsBuilder builds the alternating run lengths of a Completions from consecutive stretches
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
