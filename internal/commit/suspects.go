package commit

// Poison-pill suspicion, the part that rides on the commit metadata. A message that kills the
// process is read again after every restart and kills it again; the root package's
// PoisonPillAfter stops running it once the process died that many times in a row with it in
// a handler. The count travels in the commits as suspects (metadata.go).
//
// After an owner died (its last commit was a periodic one, not released by a revoke, stop or
// Close), every message it may have had in a handler — unfinished, and at or below the
// highest offset it had read — is suspect to the next owner (Hold), and so is any message a
// commit names with deaths. A suspect runs only after a commit that says it is in a handler
// (Partition.Mark): if the process dies then, the next owner reads one more death for it. A
// suspect that finishes, or comes out of its handler alive (Partition.Survived), is
// forgotten; one that is let go of unfinished (a stop, a revoke) keeps its count, not
// increased.
//
// A death can come before any commit says its message was read: then nothing marks it. So
// after the last owner died, the new owner runs a message only once a commit says it was read
// (AwaitRecord), until its first periodic commit (the window): the next owner then finds it
// among the suspects. Where nobody ever committed, only the messages read before the first
// commit wait for it (firstOnly).
//
// Invariant: a commit names a suspect with one death more than it had only while the suspect
// is in a handler (from Mark until it finishes or survives), and never a commit that lets
// the partition go (released: nobody died).

import (
	"cmp"
	"slices"
	"time"
)

// suspectState is a suspect of a partition.
type suspectState struct {
	deaths  uint32 // deaths so far
	running bool   // in a handler now: a death now is one more
}

// suspicion is a partition's suspects and window. Its Partition's mu guards it.
type suspicion struct {
	// suspects (guarded by Partition.mu) are the unfinished messages that were, or are, in a
	// handler when the process died: by offset.
	suspects map[int64]suspectState
	// marksSet (guarded by Partition.mu) counts the suspects that entered a handler;
	// marksCommitted (guarded by Partition.mu) is marksSet at the last commit written.
	marksSet, marksCommitted uint64
	// window, firstOnly (guarded by Partition.mu): see the file's comment; open from the
	// Partition's assignment until a periodic commit a commit interval later (closeWindow),
	// or, firstOnly, the first commit.
	window, firstOnly bool
}

// open starts the window h calls for.
func (s *suspicion) open(h Handover) {
	if h.window {
		s.window, s.firstOnly = true, h.firstOnly
	}
}

// add records a suspect read (running false), or entering a handler (running).
func (s *suspicion) add(offset int64, deaths uint32, running bool) {
	if s.suspects == nil {
		s.suspects = map[int64]suspectState{}
	}
	s.suspects[offset] = suspectState{deaths: deaths, running: running}
}

// forget drops offset from the suspects; it reports whether it was one.
func (s *suspicion) forget(offset int64) bool {
	if len(s.suspects) == 0 {
		return false
	}
	_, ok := s.suspects[offset]
	delete(s.suspects, offset)
	return ok
}

// list lists the suspects for a commit, by offset: one in a handler counts a death more,
// unless the commit lets the partition go (released: nobody died).
func (s *suspicion) list(released bool) []Suspect {
	var out []Suspect
	for off, st := range s.suspects {
		d := st.deaths
		if st.running && !released {
			d++
		}
		if d > 0 {
			out = append(out, Suspect{Offset: off, Deaths: d})
		}
	}
	slices.SortFunc(out, func(a, b Suspect) int { return cmp.Compare(a.Offset, b.Offset) })
	return out
}

// Mark records that the suspect at offset, which died deaths times before, is entering its
// handler, and returns the mark's number: a commit written after it says so (MarkCommitted).
func (p *Partition) Mark(offset int64, deaths uint32) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sus.add(offset, deaths, true)
	p.changed = true
	p.sus.marksSet++
	return p.sus.marksSet
}

// MarkCommitted reports whether a commit written since mark (Mark's number) covers it.
func (p *Partition) MarkCommitted(mark uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sus.marksCommitted >= mark
}

// Survived forgets the suspect at offset: it came out of its handler alive.
func (p *Partition) Survived(offset int64) {
	p.mu.Lock()
	if p.sus.forget(offset) {
		p.changed = true
	}
	p.mu.Unlock()
}

// Recorded reports whether a commit written says offset was read.
func (p *Partition) Recorded(offset int64) bool { return p.recorded.Load() >= offset }

// CloseWindow ends the partition's window once a periodic commit comes every after its
// assignment (now: the commit's time).
func (p *Partition) CloseWindow(now time.Time, every time.Duration) {
	p.mu.Lock()
	if p.sus.window && now.Sub(p.assignedAt) >= every {
		p.sus.window = false
	}
	p.mu.Unlock()
}
