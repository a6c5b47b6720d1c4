package zkafka

// Revoke handling of one Run (G6). The KReader (reader.go) calls revoked from inside its poll,
// on the reader goroutine, before the partitions go away; afterwards the KReader stores and
// commits what finished and drops the partitions' commit trackers (commit.go).
//
// Invariant: when revoked returns, no queued message of a revoked partition is left on any
// virtual partition (each was released unfinished: the next owner reads it), and every
// message of those partitions that a processor had popped has been let go of — finished or
// not — or the deadline passed and the next owner reads it again.
//
// A message waiting inside its processor (its process delay, the breaker) learns of the revoke
// through its virtual partition's kick channel and its tracker's revoking flag (processor.go,
// waitCut); a dead letter write waiting out a backoff through the writer's revoked signal
// (deadletter.go). A message parked for a retry is removed with the queued ones (parking.go).

import "time"

// revoked drops the queued messages of parts and waits, up to revokeWait, for the in-flight
// ones, so that what finishes can still be committed. The periodic commit goes on meanwhile
// (flush): the reader goroutine waits here, and the handlers of the partitions an incremental
// revoke leaves to the member run on; a wait that outlasted the member's place in the group
// (a handler past its timeout, max.poll.interval.ms) lost all they finished in it.
func (l *readLoop) revoked(parts []tpKey) {
	rs := l.rs
	if l.handover.TryLock() {
		// Inside a poll of the reader's batch (or between two): what the batch collected goes
		// to the queues first, where the revoke finds it. When the reader dispatches while a
		// Close revokes, what it collected is queued after this, and its processor lets go
		// of it, unfinished, when it sees its partition revoking (processors.serve).
		l.wakeQueued()
		l.handover.Unlock()
	}
	set := make(map[tpKey]struct{}, len(parts))
	for _, p := range parts {
		set[p] = struct{}{}
	}
	in := func(m *Message) bool {
		_, ok := set[tpKey{m.Topic, m.Partition}]
		return ok
	}
	for _, vp := range rs.vps {
		for _, m := range vp.removeIf(in) {
			rs.release(m)
		}
		signal(vp.kick)
	}
	if rs.dlt != nil {
		rs.dlt.revoked()
	}
	start := time.Now()
	deadline, early := start.Add(l.revokeWait()), start.Add(revokeEarlyCommit)
	for now := start; now.Before(deadline); now = time.Now() {
		if !l.busyWith(in) {
			return
		}
		if !early.IsZero() && now.After(early) {
			l.commitBeforeWait(set)
			early = time.Time{}
		}
		if rs.kr != nil {
			l.flush(now)
		}
		time.Sleep(revokeCheckEvery)
	}
	rs.w.logger.Warnw(rs.ctx, "zkafka: revoke deadline passed with messages still in flight; they will be read again by the next owner", "topic", rs.topic)
}

// commitBeforeWait commits what is finished of parts while a revoke still waits for their
// in-flight messages: a wait that outlasts the member's place in the group (a handler past its
// timeout) has its commit after the wait refused, and the next owner ran again all that was
// finished since the last periodic commit.
func (l *readLoop) commitBeforeWait(parts map[tpKey]struct{}) {
	kr := l.rs.kr
	if kr == nil || kr.offsets.committer == nil {
		return
	}
	if err := kr.offsets.commitFinished(func(k tpKey) bool { _, ok := parts[k]; return ok }, false); err != nil {
		l.rs.w.logger.Debugw(l.rs.ctx, "zkafka: committing before a revoke's wait failed; the revoke commits after it", "error", err)
	}
}

// busyWith reports whether a virtual partition holds a popped message for which in is true,
// or such a message waits for its dead letter.
func (l *readLoop) busyWith(in func(*Message) bool) bool {
	for _, vp := range l.rs.vps {
		if m := vp.busy.Load(); m != nil && in(m) {
			return true
		}
		if b := vp.batch.Load(); b != nil && b.holds(in) {
			return true
		}
	}
	return l.rs.dlt != nil && l.rs.dlt.pendingWith(in)
}

// revokeWait bounds how long a revoke waits for in-flight messages: half the max poll
// interval, at most revokeMaxWait.
func (l *readLoop) revokeWait() time.Duration {
	return min(l.rs.w.topicConfig.maxPollInterval()/2, revokeMaxWait)
}
