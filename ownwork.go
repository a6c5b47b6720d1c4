package zkafka

// A reader remembers what it finished of a partition it lost, for when the partition comes
// back to it (G16). A revoke commits what is finished, but that commit may fail (the group
// coordinator is away) or be skipped (the assignment was lost: the session timed out); the
// partition is then read again from the last commit that landed, often by this same reader
// a moment later (a sticky assignor gives it back). Without this memory it ran again
// everything it had finished since that commit (make chaos: 500 to 700 "same-run"
// duplicates in a run of 100,000 messages).
//
// Invariant: a message is skipped as the reader's own work only when this reader finished
// it (ran it successfully, dead-lettered it, or skipped it as finished before) in the
// assignment that ended, the partition came back within ownWorkMaxAge, and the group's
// committed offset is still at or above where that assignment began to read: a partition of
// a topic deleted and created again has lost its committed offset, and its memory is not
// used.

import (
	"slices"
	"time"
)

// ownWorkMaxAge is how long a reader remembers what it finished of a partition it lost.
const ownWorkMaxAge = 2 * time.Minute

// ownWork is what a reader finished of a partition in an assignment that ended.
type ownWork struct {
	from, to int64   // every offset read in [from, to) was finished
	above    []int64 // finished offsets above to, ascending
	at       time.Time
	// earlier is what an earlier assignment finished and the last one had not read past yet
	// (an assignment revoked before it read what it was given); nil: nothing.
	earlier *ownWork
}

// newOwnWork returns what t finished in its assignment, and what it was given of earlier ones
// and had not read past; nil when nothing. t is closed or being removed.
func newOwnWork(t *partitionTracker, now time.Time) *ownWork {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.firstRead < 0 || t.next <= t.firstRead {
		return t.own
	}
	w := &ownWork{from: t.firstRead, to: t.next, at: now}
	if t.own != nil {
		w.earlier = &ownWork{from: t.own.from, to: t.own.to, above: t.own.above, at: t.own.at} // one level kept
	}
	mask := uint64(len(t.offsets) - 1)
	for s := t.head; s != t.tail; s++ {
		if i := s & mask; t.done[i] {
			w.above = append(w.above, t.offsets[i])
		}
	}
	return w
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

// judge completes v, what the partition's last commit says (partitionTracker.judge) of the
// message just read at offset, with what the reader finished of it before: finished then, it
// is finished now (finish), without running. A message the last commit calls a suspect, or a
// last commit about another log, is left as v says. forget: w has nothing more to say (past
// its end, or about another log).
func (w *ownWork) judge(offset int64, v readVerdict) (_ readVerdict, finish, forget bool) {
	if v.mismatch {
		return v, false, true
	}
	forget = w.past(offset)
	if v.skip || v.careful || v.deaths > 0 || !w.finished(offset) {
		return v, false, forget
	}
	return readVerdict{skip: true}, true, forget
}
