package zkafka

// The fence of one KReader (G19): once the member cannot be sure the group still gives it its
// partitions, no handler starts for a message of them until the group says so. Reading and
// polling go on (G7): only the start of a handler waits (processors.handle, at fence.pass).
//
// Raised by the broker's word that the membership is in doubt: a commit refused with
// REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH or
// STALE_MEMBER_EPOCH (doubtfulCommitError). A rebalance in progress is the first sign a
// member gets that the group may finish it without it — a JoinGroup that goes unanswered, a
// session that expires at the broker before librdkafka notices — and then hand its partitions
// to another member while it still runs handlers for them. librdkafka's own signs come later:
// its session timeout counts from its last answered heartbeat, and its "assignment lost"
// revoke only once it heard it is out.
//
// Raised too when the group has not answered for doubtAfter (membershipDoubtAfter: half the
// session timeout): no commit accepted and no rebalance callback, while the coordinator
// leaves requests unanswered (a commit held for seconds, heartbeats with it). The broker
// expires a member a session timeout after its last heartbeat; librdkafka notices only a
// session timeout after its last answer, and in the chaos harness a member kept running
// handlers for partitions the group had given to another member for six seconds, its
// periodic commit hanging all that time. While the last answer is older than half of
// doubtAfter, the periodic commit probes, so a member that is merely idle stays confirmed.
//
// Lifted by a commit the broker accepted: the member and its generation or epoch are current,
// so every partition it still holds is its own (under the classic protocols a partition
// moves only after its owner revoked it or left the group, under the consumer protocol only
// after its owner acknowledged the revocation or was fenced), and what it finishes from now
// on can be committed. A rebalance callback lifts it only when it leaves the reader without
// partitions (nothing left to hold back): one that assigns or keeps partitions says the
// member synced a generation, and in the chaos harness members whose group rebalanced again
// at once got callback after callback while every commit was refused, and the work they
// finished in between ran again at the next owner. A callback makes the next commit due at
// once instead. While raised, the periodic commit is a probe, every probeEvery: it
// commits even what did not change (offsetStore.commitSnapshots), so that the answer comes
// without a handler having to finish first.
//
// Held, quietly, while no commit has been accepted for holdAfter (commitHoldAfter: a quarter
// of the commit interval, from 100 ms to 5 s) since the first one sent after the last
// accepted: a commit late or failing. Under the classic protocols a broker serves one connection's
// requests in order, and a member's JoinGroup waits there until every member has rejoined or
// the rebalance times out: seconds, when a member died. Its commits queue behind the
// JoinGroup, and work it finishes meanwhile cannot be committed; in the cooperative chaos run
// a member finished 400 messages in such a wait, lost its partitions, and the next owner ran
// them all again. Eager assignment stops processing for the whole rebalance; the hold stops
// it only once commits fall behind, so the work at risk is what finishes in holdAfter. A
// commit normally comes back within milliseconds; a hold that was not needed costs a pause
// until it does.
// It is not a doubt: no line is logged and Work.Status does not show it; the next accepted
// commit lifts it (the periodic commit probes meanwhile), as does a rebalance that leaves no
// partition. A refusal that puts the membership in doubt, or silence past doubtAfter, turns
// it into the fence proper, with its warning. An idle member sends no commit and is never
// held.
//
// Invariant: while raised, pass lets no message through, and it is lowered only by an
// accepted commit or a callback that left no partition; a handler already running when it
// rises runs on (it cannot be stopped, and its partition's revoke waits for it, G6). One
// warning is logged per episode, when it rises; its end is logged at info level.
//
// Rejected: fencing on librdkafka's error events (ErrAllBrokersDown and the like) says
// nothing about the group, and a coordinator that moves does not end a membership; fencing
// only on ILLEGAL_GENERATION and UNKNOWN_MEMBER_ID comes after the group has already given
// the partitions away.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// fence holds back the start of handlers while the membership is in doubt, or, quietly, while
// commits fall behind (a hold). The reader
// goroutine, the periodic commit's goroutine, processors (commits of poison.go, pass) and
// Work.Status use it at once.
type fence struct {
	logger  Logger // immutable
	groupID string // immutable

	mu     sync.Mutex
	raised bool          // guarded by mu
	quiet  bool          // guarded by mu: raised only because a commit is late (holdAfter)
	since  time.Time     // guarded by mu: when it was raised
	cause  string        // guarded by mu: why
	lifted chan struct{} // guarded by mu: closed when it is lifted; nil while down
	up     atomic.Bool   // atomic: raised, for pass's fast path; written under mu

	// doubtAfter is how long the membership counts as confirmed after the group's last
	// answer (0: for ever). Immutable.
	doubtAfter time.Duration
	// answered is when the group last answered (UnixNano; 0: not yet). Atomic.
	answered atomic.Int64
	// holdAfter is how long commits may go unaccepted before handlers wait for one (0: for
	// ever). Immutable.
	holdAfter time.Duration
	// unacked is when the first commit sent since the last accepted one was sent (UnixNano;
	// 0: none). Atomic.
	unacked  atomic.Int64
	episodes atomic.Int64 // atomic: how many times it was raised
}

func newFence(logger Logger, groupID string, doubtAfter, holdAfter time.Duration) *fence {
	return &fence{logger: logger, groupID: groupID, doubtAfter: doubtAfter, holdAfter: holdAfter}
}

// commitHoldAfter is the fence's holdAfter for a reader that commits every every: a quarter
// of that, from 100 ms to 5 s.
func commitHoldAfter(every time.Duration) time.Duration {
	return min(max(every/4, 100*time.Millisecond), 5*time.Second)
}

// membershipDoubtAfter is the fence's doubtAfter for tc: half the session timeout under the
// classic protocol (AdditionalProps["session.timeout.ms"] if set); under the consumer
// protocol, whose session timeout is the broker's and unknown here, half the max poll
// interval (the rebalance timeout within which a member must let revoked partitions go), at
// most half the broker's default session timeout of 45 s.
func membershipDoubtAfter(tc ConsumerTopicConfig) time.Duration {
	if tc.consumerProtocol() {
		return min(tc.maxPollInterval(), 45*time.Second) / 2
	}
	session := tc.sessionTimeout()
	if ms, ok := intValue(tc.AdditionalProps[keySessionTimeout]); ok && ms > 0 {
		session = time.Duration(ms) * time.Millisecond
	}
	return session / 2
}

// errNoAnswer is the fence's cause when the group has not answered for doubtAfter.
var errNoAnswer = errors.New("the group coordinator answered no commit and no rebalance for half a session timeout")

// answer records that the group accepted a commit and lifts the fence. Safe on nil.
func (f *fence) answer(how string) {
	if f == nil {
		return
	}
	f.answered.Store(time.Now().UnixNano())
	f.unacked.Store(0)
	f.lift(how)
}

// heard records a rebalance callback: the group answered. It lifts the fence only when the
// reader owns nothing now (empty); otherwise the next accepted commit does. Safe on nil.
func (f *fence) heard(empty bool) {
	if f == nil {
		return
	}
	f.answered.Store(time.Now().UnixNano())
	if empty {
		f.unacked.Store(0) // nothing left to commit
		f.lift("a rebalance that left no partition")
	}
}

// silentFor is how long the group has not answered at now; 0 before its first answer.
func (f *fence) silentFor(now time.Time) time.Duration {
	a := f.answered.Load()
	if a == 0 {
		return 0
	}
	return time.Duration(now.UnixNano() - a)
}

// check raises the fence when the group has been silent for doubtAfter, and quietly when no
// commit has been accepted for holdAfter since one was sent. Safe on nil.
func (f *fence) check(now time.Time) {
	if f == nil {
		return
	}
	if f.doubtAfter > 0 && f.silentFor(now) > f.doubtAfter {
		f.raise(errNoAnswer)
		return
	}
	if u := f.unacked.Load(); u != 0 && f.holdAfter > 0 && now.UnixNano()-u > int64(f.holdAfter) {
		f.hold()
	}
}

// sending records that a commit is sent at now; the next accepted commit (answer) clears it.
// Safe on nil.
func (f *fence) sending(now time.Time) {
	if f != nil {
		f.unacked.CompareAndSwap(0, now.UnixNano())
	}
}

// hold raises the fence quietly: commits fall behind. Nothing is logged.
func (f *fence) hold() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.raised {
		return
	}
	f.goUp()
	f.quiet, f.cause = true, "commits not accepted"
}

// goUp raises a fence that is down: since now, with a new lifted channel. f.mu is held.
func (f *fence) goUp() {
	if !f.raised {
		f.raised, f.since, f.lifted = true, time.Now(), make(chan struct{})
		f.up.Store(true)
	}
}

// wantsProbe reports whether the next commit should probe: the fence is up, or the group has
// been silent for half of doubtAfter. Safe on nil.
func (f *fence) wantsProbe(now time.Time) bool {
	if f == nil {
		return false
	}
	if f.up.Load() {
		return true
	}
	return f.doubtAfter > 0 && f.silentFor(now) > f.doubtAfter/2
}

// isUp reports whether the fence is raised. Safe on nil.
func (f *fence) isUp() bool { return f != nil && f.up.Load() }

// doubtfulCommitError reports whether a commit was refused because the broker doubts the
// member's place in the group: a rebalance in progress, an old generation or member epoch, an
// unknown or fenced member.
func doubtfulCommitError(err error) bool {
	return isCode(err, kafka.ErrRebalanceInProgress, kafka.ErrIllegalGeneration, kafka.ErrUnknownMemberID,
		kafka.ErrFencedMemberEpoch, kafka.ErrStaleMemberEpoch, kafka.ErrFencedInstanceID)
}

// raise puts the fence up because of cause (the error that put the membership in doubt).
// Safe on nil.
func (f *fence) raise(cause error) {
	if f == nil {
		return
	}
	f.mu.Lock()
	if f.raised && !f.quiet {
		f.mu.Unlock()
		return
	}
	f.goUp()
	f.quiet, f.cause = false, cause.Error() // a hold becomes a doubt
	f.mu.Unlock()
	f.episodes.Add(1)
	f.logger.Warnw(context.Background(), "zkafka: membership of the group in doubt; no handler starts for its partitions until the group confirms or revokes them",
		"group", f.groupID, "error", cause)
}

// lift takes the fence down: the group answered (how says which way). Safe on nil.
func (f *fence) lift(how string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	if !f.raised {
		f.mu.Unlock()
		return
	}
	since, quiet := f.since, f.quiet
	f.raised, f.quiet, f.cause = false, false, ""
	f.up.Store(false)
	close(f.lifted)
	f.lifted = nil
	f.mu.Unlock()
	if quiet {
		return
	}
	f.logger.Infow(context.Background(), "zkafka: membership of the group confirmed; handlers start again",
		"group", f.groupID, "by", how, "fenced_for", time.Since(since).Round(time.Millisecond).String())
}

// state reports whether the fence is up for a doubt (not a hold), since when and why. Safe
// on nil.
func (f *fence) state() (raised bool, since time.Time, cause string) {
	if f == nil {
		return false, time.Time{}, ""
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.quiet {
		return false, time.Time{}, ""
	}
	return f.raised, f.since, f.cause
}

// pass waits while the fence is up. It returns false when the wait is cut (a stop, an
// abrupt cancel, a revoke of the message's partition): the message is let go of unfinished.
// Safe on nil.
func (f *fence) pass(cut waitCut) bool {
	_, ok := f.passAt(cut, time.Time{})
	return ok
}

// passAt is pass, and returns the time of its last look when it let the message through:
// the handler's start, unless something runs between (a hook, a span); zero on nil (no look).
// The clock is a tenth of a microsecond per reading on some machines: read once, for both. A
// non-zero now is the time to look at first, read just before by the caller (processors.serve).
func (f *fence) passAt(cut waitCut, now time.Time) (time.Time, bool) {
	if f == nil {
		return now, true
	}
	for {
		if now.IsZero() {
			now = time.Now()
		}
		f.check(now)
		if !f.up.Load() {
			return now, true
		}
		f.mu.Lock()
		lifted := f.lifted
		f.mu.Unlock()
		if lifted == nil {
			return now, true
		}
		if !cut.sleep(nil, lifted) {
			return time.Time{}, false
		}
		now = time.Time{} // it waited: look at the clock again
	}
}

// fence is the fence of the run's reader; nil (no fence) for a Reader that is not the
// library's own.
func (rs *runState) fence() *fence {
	if kr := rs.published.Load(); kr != nil {
		return kr.offsets.fence
	}
	return nil
}
