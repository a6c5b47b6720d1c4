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

// snapshot returns what to commit for the partition: the offset — the oldest unfinished
// message read, or when none is, the one after the last finished — and, when messages are
// unfinished, what is finished above it. ok is false when there is nothing to commit: nothing
// finished yet, the partition revoked, or (unless force) nothing read or finished since the
// last snapshot.
func (t *partitionTracker) snapshot(force bool) (offset int64, c *completions, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || (!t.changed && !force) {
		return 0, nil, false
	}
	t.changed = false
	if t.head == t.tail {
		return t.next, nil, t.next >= 0
	}
	mask := uint64(len(t.offsets) - 1)
	h := t.head & mask
	c = &completions{base: t.offsets[h], stamp: t.ids[h].stamp, epoch: t.ids[h].epoch, read: t.offsets[(t.tail-1)&mask]}
	c.runs = t.runs(c.base)
	return c.base, c, true
}

// touch makes the next snapshot take the partition even if nothing changed (a commit failed).
func (t *partitionTracker) touch() {
	t.mu.Lock()
	t.changed = true
	t.mu.Unlock()
}

// runs are the alternating lengths of unfinished and finished offsets from base, the oldest
// unfinished, ending with a finished run. Offsets that were not read (gaps) count as
// unfinished. The caller holds mu.
func (t *partitionTracker) runs(base int64) []uint64 {
	mask := uint64(len(t.offsets) - 1)
	var runs []uint64
	var run uint64
	finished := false
	prev := base - 1
	for s := t.head; s != t.tail; s++ {
		i := s & mask
		off, done := t.offsets[i], t.done[i]
		if gap := uint64(off - prev - 1); gap > 0 {
			if finished {
				runs = append(runs, run)
				run, finished = 0, false
			}
			run += gap
		}
		prev = off
		if done != finished {
			runs = append(runs, run)
			run, finished = 0, done
		}
		run++
	}
	if finished {
		runs = append(runs, run)
	}
	return runs
}

// prior is what the last commit of a partition said, as its next owner reads the partition.
type prior struct {
	c        *completions
	verified bool  // the first message read was the commit's base record
	run      int   // index in c.runs of the run that starts at runStart
	runStart int64 // first offset of that run
}

func newPrior(c *completions) *prior { return &prior{c: c, runStart: c.base} }

// priorVerdict is what to do with a message read, by its partition's prior.
type priorVerdict int

const (
	priorRun      priorVerdict = iota // run it
	priorSkip                         // finished before: do not run it
	priorDone                         // run it; nothing further is finished: forget prior
	priorMismatch                     // run it; the commit is not about this log: forget prior
)

// check judges the message read at offset with record id. Offsets grow from one call to the
// next.
func (p *prior) check(offset int64, id recordID) priorVerdict {
	if !p.verified {
		if offset != p.c.base || id != (recordID{stamp: p.c.stamp, epoch: p.c.epoch}) {
			return priorMismatch
		}
		p.verified = true
	}
	runs := p.c.runs
	for p.run < len(runs) && offset-p.runStart >= int64(runs[p.run]) {
		p.runStart += int64(runs[p.run])
		p.run++
	}
	switch {
	case p.run == len(runs):
		return priorDone
	case p.run%2 == 1:
		return priorSkip
	}
	return priorRun
}
