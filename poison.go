package zkafka

// Poison pills: a message that kills the process (a crash, an out-of-memory kill, os.Exit in a
// library) is read again after every restart and kills it again, forever. A Work counts how
// often, in a row, the process died while a message was in its handler, and at
// PoisonPillAfter deaths it does not run the message again: it dead-letters it (or skips it,
// logged and counted) and the partition moves on.
//
// The count travels in the commit metadata as suspects; internal/commit (suspects.go) keeps
// them and decides, for each message read, whether it is suspect (commit.Hold) or read in a
// window after a death (commit.AwaitRecord). This file is the processors' side. A suspect
// runs only after a commit that says it is in a handler (suspicion.mark): if the process dies
// then, the next owner reads one more death for it. Suspects that never were in a handler at
// a death run side by side (their marks share commits); one that was runs alone (suspicion),
// so that its next death is its own. A message read in the window runs once a commit says it
// was read (suspicion.record); one commit covers all read so far.
//
// Cost: nothing on the normal path. After a death, a synchronous commit before the suspects'
// handlers (shared by those that start together), and those that were in a handler at a
// death run one at a time.
//
// Invariant: a message is quarantined only when that many consecutive commits, each written
// by an owner that then died, said it was in a handler.

import (
	"context"
	"errors"
	"fmt"

	"github.com/zkafka-go/zkafka/internal/commit"
)

// defaultPoisonPillAfter is PoisonPillAfter's default.
const defaultPoisonPillAfter = 3

// PoisonPillAfter makes a Work stop running a message that was in its handler each of the
// last n times the process died (killed, crashed, os.Exit): the message is written to the
// dead letter topic with a zkafka-error saying so, or, without one, skipped with an error log;
// either way it counts in FailureCounts.PoisonPills and the partition moves on. Default 3;
// 0 turns the detection off. It costs nothing while the process does not die; after a death,
// the messages the dead process may have had in a handler run one at a time, each after a
// commit.
func PoisonPillAfter(n uint32) WorkOption {
	return workOptionFunc(func(w *Work) { w.poisonAfter = n })
}

// errPoisonPill is the failure of a quarantined message.
var errPoisonPill = errors.New("zkafka: poison pill")

// poisonPillError is the error of a quarantined message, the zkafka-error of its dead letter.
func poisonPillError(deaths uint32) error {
	return PermanentError(fmt.Errorf("%w: the process died %d times in a row with this message in the handler (PoisonPillAfter); it is not run again", errPoisonPill, deaths))
}

// mark commits that m, a suspect, is in a handler now, before its handler runs. Marks of
// several suspects share a commit: one that began after m's mark covers it. It returns false
// when the reader is closed or m's partition is being revoked. A failed commit is logged, and
// m runs anyway.
func (s *suspicion) mark(m *Message) bool {
	const failed = "zkafka: committing that a suspect message is in the handler failed; running it anyway"
	return s.commitFor(m, failed, func(r *KReader, t *commit.Partition, only func(tpKey) bool) error {
		return r.offsets.commitMark(t, t.Mark(m.Offset, m.deaths), only)
	})
}

// admission is how a message read enters its handler.
type admission uint8

const (
	admitFree     admission = iota // at once
	admitMarked                    // a suspect: after a commit says it is in a handler
	admitRecorded                  // read in its partition's window: once a commit says it was read
	admitNever                     // a poison pill: quarantined, never run
)

// suspectMessage sets m's admission, as out (Hold or AwaitRecord) says: a poison pill (after,
// PoisonPillAfter, deaths or more), a suspect, or read in its partition's window; nothing
// when after is 0 (off).
func suspectMessage(m *Message, out commit.Outcome, after uint32) {
	if after == 0 {
		return
	}
	m.deaths = out.Deaths()
	switch {
	case out.Quarantine(after):
		m.admit = admitNever
	case out.Action() == commit.Hold:
		m.admit = admitMarked
	default:
		m.admit = admitRecorded
	}
}

// record waits, in its partition's window, until a commit says m was read. It returns false
// when the reader is closed or m's partition is being revoked. A failed commit is logged,
// and m runs anyway.
func (s *suspicion) record(m *Message) bool {
	const failed = "zkafka: committing what was read before running it failed; running it anyway"
	return s.commitFor(m, failed, func(r *KReader, t *commit.Partition, only func(tpKey) bool) error {
		return r.offsets.commitRead(t, m.Offset, only)
	})
}

// commitFor runs write, a commit of m's partition only, while the reader is open and m's
// partition is not being revoked; it returns false when either is not so. A failed commit is
// logged with the words failed, and m runs anyway (true).
func (s *suspicion) commitFor(m *Message, failed string, write func(r *KReader, t *commit.Partition, only func(tpKey) bool) error) bool {
	r := s.rs.published.Load() // rs.kr is the reader goroutine's (renew.go replaces it)
	if r == nil || !m.trk.BelongsTo(r.tracker) {
		return false // m was read by a consumer since replaced: its partitions are revoked
	}
	return r.whileOpen(func() bool {
		t := m.trk
		if t.Revoking() {
			return false
		}
		k := tpKey{m.Topic, m.Partition}
		if err := write(r, t, func(c tpKey) bool { return c == k }); err != nil {
			r.failures.warnf(context.Background(), failed, err,
				"group", r.groupID, "topic", m.Topic, "partition", m.Partition, "offset", m.Offset)
		}
		return true
	})
}

// suspicion lets suspects into their handlers: one that never was in a handler when the
// process died shares the Run with others (each holds a slot), one that was (deaths > 0)
// runs alone (it holds them all), so that its next death is its own.
// The processors use it at once; its fields are immutable, the channels its only state.
type suspicion struct {
	slots chan struct{} // immutable; a token per slot held
	alone chan struct{} // immutable; held by the one suspect gathering every slot
	rs    *runState     // immutable; its KReader commits the marks
}

func newSuspicion(rs *runState, slots int) *suspicion {
	return &suspicion{slots: make(chan struct{}, max(slots, 1)), alone: make(chan struct{}, 1), rs: rs}
}

// enter lets m, a suspect or a message read in its partition's window, into its handler: it
// waits for m's slots, then commits that m is in a handler (a suspect), or that it was read.
// It returns false when m must be let go of instead (stop, revoke, reader closed).
func (s *suspicion) enter(cut waitCut) bool {
	m := cut.m
	if m.admit == admitRecorded {
		return m.trk.Recorded(m.Offset) || s.record(m)
	}
	alone := m.deaths > 0
	if alone && !cut.send(s.alone) {
		return false
	}
	n := s.need(m)
	for held := 0; held < n; held++ {
		if !cut.send(s.slots) {
			s.release(held, alone)
			return false
		}
	}
	if !s.mark(m) {
		s.release(n, alone)
		return false
	}
	return true
}

// need is how many slots m takes.
func (s *suspicion) need(m *Message) int {
	if m.deaths > 0 {
		return cap(s.slots)
	}
	return 1
}

// release gives back n slots, and the right to gather them.
func (s *suspicion) release(n int, alone bool) {
	for range n {
		<-s.slots
	}
	if alone {
		<-s.alone
	}
}

// leave lets other suspects in. m came out of its handler alive: its count starts again.
func (s *suspicion) leave(m *Message) {
	s.release(s.need(m), m.deaths > 0)
	m.deaths = 0
	m.trk.Survived(m.Offset)
}

// send puts a token into ch, unless the wait is cut first (stop, cancel, revoke of the
// message's partition).
func (c waitCut) send(ch chan struct{}) bool {
	for {
		select {
		case ch <- struct{}{}:
			return true
		case <-c.stopping:
			return false
		case <-c.done:
			return false
		case <-c.kick:
			if c.revoked() {
				return false
			}
		}
	}
}

// quarantine completes m, a poison pill, as failed without running its handler.
func (p *processors) quarantine(vp *virtualPartition, m *Message) {
	p.counts.poisonPills.Add(1)
	err := poisonPillError(m.deaths)
	p.rs.w.logger.Errorw(p.rs.ctx, "zkafka: poison pill: the process died each time this message was in the handler; not running it again",
		"topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "deaths", m.deaths)
	p.complete(vp, m, err, breakerTicket{}, false)
}
