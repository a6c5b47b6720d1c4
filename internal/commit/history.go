package commit

// A partition's history: what was finished of it before this assignment read it, in one
// place. Two witnesses feed it:
//
//   - the partition's last commit (prior): its metadata (metadata.go) lists the offsets
//     above the committed one that its writer had finished, and the suspects (suspects.go);
//   - this reader's own last assignment of the partition (ownWork): a revoke commits what is
//     finished, but that commit may fail (the group coordinator is away) or be skipped (the
//     assignment was lost: the session timed out); the partition is then read again from the
//     last commit that landed, often by this same reader a moment later (a sticky assignor
//     gives it back), which must not run again what it finished.
//
// Each message read asks the history once (judge) and gets one Outcome. The last commit comes
// first: a message it calls finished is skipped, one it calls a suspect is held; only a message
// it says nothing of may be skipped as this reader's own work.
//
// Invariant: a message is skipped only when a commit of this partition's log said it was
// finished, or this reader finished it (ran it successfully, dead-lettered it, or skipped it
// as finished before) in the assignment that ended, the partition came back within
// ownWorkMaxAge, and the group's committed offset is still at or above where that assignment
// began to read. The first message the next owner reads must be the committed one, with the
// timestamp and leader epoch the commit recorded for it; otherwise (a recreated topic reusing
// offsets, an offset reset, a record deleted by retention) the metadata is ignored. A
// partition of a topic deleted and created again has lost its committed offset, and this
// reader's memory of it is not used.

import (
	"fmt"
	"slices"
	"time"
)

// ownWorkMaxAge is how long a reader remembers what it finished of a partition it lost.
const ownWorkMaxAge = 2 * time.Minute

// Record tells a record apart from another at the same offset of a recreated topic.
type Record struct {
	Stamp int64 // timestamp, Unix milliseconds
	Epoch int32 // leader epoch, -1 when unknown
}

// history is what was finished of a partition before this assignment read it. Its
// Partition's mu guards it.
type history struct {
	prior *prior   // guarded by Partition.mu: the last commit, as read so far; nil: nothing (left)
	own   *ownWork // guarded by Partition.mu: this reader's last assignments; nil: nothing (left)
}

// newHistory is the history an assignment starts with: what its handover h says of the last
// commit, and w, what this reader finished of the partition before (nil: nothing), if the
// group's committed offset allows its use at now.
func newHistory(h Handover, w *ownWork, now time.Time) history {
	hs := history{prior: h.prior}
	if h.knowsCommitted && w.usable(h.committed, now) {
		hs.own = w
	}
	return hs
}

// empty reports whether the history has nothing (left) to say.
func (h *history) empty() bool { return h.prior == nil && h.own == nil }

// judge says what the history knows of the message read at offset, record id: Skip,
// Hold (a suspect of the last commit), or Process. Offsets grow from one call to the next.
func (h *history) judge(offset int64, id Record) Outcome {
	var o Outcome
	if h.prior != nil {
		var last bool
		if o, last = h.prior.check(offset, id); last {
			h.prior = nil
		}
	}
	if h.own == nil {
		return o
	}
	if o.ignored { // the last commit is about another log: so may this memory be
		h.own = nil
		return o
	}
	forget := h.own.past(offset)
	if o.action == Process && h.own.finished(offset) {
		o = Outcome{action: Skip}
	}
	if forget {
		h.own = nil
	}
	return o
}

// speaksPast reports whether the last commit still says something of offsets not read yet.
func (h *history) speaksPast() bool { return h.prior != nil }

// appendAfter adds to b what the last commit says of the offsets after last (the last one
// read), and returns suspects with the commit's suspects after last appended.
func (h *history) appendAfter(b *runsBuilder, suspects []Suspect, last int64) []Suspect {
	if h.prior == nil {
		return suspects
	}
	h.prior.appendAfter(b, last)
	return h.prior.suspectsAfter(suspects, last)
}

// prior is what the last commit of a partition said, as its next owner reads the partition.
type prior struct {
	c        *Completions
	verified bool             // the first message read was the commit's base record
	run      int              // index in c.Runs of the run that starts at runStart
	runStart int64            // first offset of that run
	deaths   map[int64]uint32 // the commit's suspects (suspects.go)
	until    int64            // the last offset the commit says anything about
}

func newPrior(c *Completions) *prior {
	p := &prior{c: c, runStart: c.Base, until: c.Base - 1}
	for _, r := range c.Runs {
		p.until += int64(r)
	}
	if !c.Released {
		p.until = max(p.until, c.Read) // any of those may have been in a handler (suspects.go)
	}
	for _, s := range c.Suspects {
		if p.deaths == nil {
			p.deaths = make(map[int64]uint32, len(c.Suspects))
		}
		p.deaths[s.Offset] = s.Deaths
		p.until = max(p.until, s.Offset)
	}
	return p
}

// check judges the message read at offset with record id; last reports that the commit says
// nothing of later offsets. Offsets grow from one call to the next.
func (p *prior) check(offset int64, id Record) (o Outcome, last bool) {
	if !p.verified {
		if offset != p.c.Base || id != (Record{Stamp: p.c.Stamp, Epoch: p.c.Epoch}) {
			return Outcome{ignored: true}, true
		}
		p.verified = true
	}
	runs := p.c.Runs
	for p.run < len(runs) && offset-p.runStart >= int64(runs[p.run]) {
		p.runStart += int64(runs[p.run])
		p.run++
	}
	switch {
	case p.run < len(runs) && p.run%2 == 1:
		o.action = Skip
	case p.deaths[offset] > 0 || (!p.c.Released && offset <= p.c.Read):
		// It may have been in a handler when the process died.
		o.action, o.deaths = Hold, p.deaths[offset]
	}
	return o, offset >= p.until
}

// appendAfter adds to b what the last commit says of the offsets after last (the last one
// read): the stretches it lists as finished, and the unfinished ones between them.
func (p *prior) appendAfter(b *runsBuilder, last int64) {
	runs := p.c.Runs
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
func (p *prior) suspectsAfter(out []Suspect, last int64) []Suspect {
	for _, s := range p.c.Suspects {
		if s.Offset > last {
			out = append(out, s)
		}
	}
	return out
}

// ownWork is what a reader finished of a partition in an assignment that ended. One holder
// owns it at a time: the Tracker (own or pending, under its mu), then one history (under its
// Partition's mu).
type ownWork struct {
	from, to int64   // every offset read in [from, to) was finished
	above    []int64 // finished offsets above to, ascending
	at       time.Time
	// earlier is what an earlier assignment finished and the last one had not read past yet
	// (an assignment revoked before it read what it was given); nil: nothing.
	earlier *ownWork
}

// usable reports whether w may be used for the partition assigned again at now, whose
// group's committed offset is committed (-1: none). An earlier part that may not be used is
// dropped from w.
func (w *ownWork) usable(committed int64, now time.Time) bool {
	if w == nil {
		return false
	}
	if w.earlier != nil && !w.earlier.usable(committed, now) {
		w.earlier = nil
	}
	return committed >= w.from && now.Sub(w.at) < ownWorkMaxAge
}

// finished reports whether the reader finished offset.
func (w *ownWork) finished(offset int64) bool {
	if offset >= w.from && offset < w.to {
		return true
	}
	if _, found := slices.BinarySearch(w.above, offset); found {
		return true
	}
	return w.earlier != nil && w.earlier.finished(offset)
}

// past reports whether offset is beyond everything w knows of.
func (w *ownWork) past(offset int64) bool {
	return offset >= w.to && (len(w.above) == 0 || offset >= w.above[len(w.above)-1]) &&
		(w.earlier == nil || w.earlier.past(offset))
}

// Handover is what an assignment learns of a partition's last commit, for its history and
// its suspects. The zero Handover knows nothing: nothing is skipped.
type Handover struct {
	prior *prior // what it says is finished and suspect; nil: nothing
	// window: the last owner died (its last commit was not released), so until this owner's
	// first periodic commit a message runs only once a commit says it was read; or nobody
	// ever committed (firstOnly), so the messages read before this owner's first commit
	// wait for it (suspects.go).
	window, firstOnly bool
	// committed is the group's committed offset (negative: none), when known
	// (knowsCommitted): what this reader finished before is used only at or above it.
	committed      int64
	knowsCommitted bool
	// pending: the committed offset could not be read at the assignment (no coordinator
	// then: it had moved); it is read again when the partition's first message arrives
	// (Tracker.SettleLate), by when librdkafka has found the coordinator to fetch from.
	pending bool
}

// PendingHandover is the Handover of a partition whose committed offset could not be read at
// its assignment: it is read again at its first message (Tracker.SettleLate).
func PendingHandover() Handover { return Handover{pending: true} }

// HandoverOf is what a committed offset says (negative: none) with its metadata (""
// for none): the offset, and what the metadata says is finished above it; the error is for
// metadata this package cannot use (ErrForeignMetadata, ErrBadMetadata), with h still
// carrying the offset.
func HandoverOf(committed int64, metadata string) (h Handover, err error) {
	h = Handover{committed: committed, knowsCommitted: true}
	h.window = committed < 0
	h.firstOnly = h.window
	if metadata == "" || committed < 0 {
		return h, nil
	}
	c, err := Decode(metadata)
	if err == nil && c.Base != committed {
		err = fmt.Errorf("%w: metadata for offset %d, committed offset %d", ErrBadMetadata, c.Base, committed)
	}
	if err != nil {
		return h, err
	}
	h.prior, h.window = newPrior(c), !c.Released
	return h, nil
}
