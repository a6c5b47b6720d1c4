package zkafka

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestOwnWorkSkipsWhatTheReaderFinishedBefore: a partition revoked without a commit that
// landed comes back to the same reader; the messages it finished in the lost assignment
// (the finished prefix and the finished ones after a gap) are finished at once, not run,
// and the rest run.
func TestOwnWorkSkipsWhatTheReaderFinishedBefore(t *testing.T) {
	ct := newCommitTracker()
	ct.reset("t", 0, handover{committed: 100, knowsCommitted: true})
	a := ct.lookup(tpKey{"t", 0})
	seqs := map[int64]uint64{}
	for off := int64(100); off < 110; off++ {
		seqs[off] = trackAdd(a, off)
	}
	for _, off := range []int64{100, 101, 102, 103, 105, 108} {
		a.finish(seqs[off]) // 104 (in a handler), 106, 107 and 109 (queued) are not
	}
	ct.remove("t", 0) // revoked; its commit failed: the group's offset is still 100

	ct.reset("t", 0, handover{committed: 100, knowsCommitted: true})
	b := ct.lookup(tpKey{"t", 0})
	var skipped, run []int64
	for off := int64(100); off < 112; off++ {
		if _, v := b.addRecord(off, recordID{epoch: -1}); v.skip {
			skipped = append(skipped, off)
		} else {
			run = append(run, off)
		}
	}
	require.Equal(t, []int64{100, 101, 102, 103, 105, 108}, skipped)
	require.Equal(t, []int64{104, 106, 107, 109, 110, 111}, run)
	require.Nil(t, b.own, "forgotten once read past")
	require.Equal(t, []storedOffset{{tpKey: tpKey{"t", 0}, offset: 104}}, ct.storable(nil),
		"the skipped prefix is finished: the offset moves to the first one that runs")
}

// TestOwnWorkOutlivesAnAssignmentThatReadNothing: the partition comes back, is revoked again
// before anything is read, then comes back once more: what the first assignment finished is
// still skipped. (make chaos: one worker ran 174 messages again after such a round.) An
// assignment that read some of it keeps the rest too.
func TestOwnWorkOutlivesAnAssignmentThatReadNothing(t *testing.T) {
	ct := newCommitTracker()
	h := handover{committed: 100, knowsCommitted: true}
	ct.reset("t", 0, h)
	a := ct.lookup(tpKey{"t", 0})
	for off := int64(100); off < 105; off++ {
		a.finish(trackAdd(a, off))
	}
	ct.remove("t", 0)
	ct.reset("t", 0, h) // back, and revoked before a read
	ct.remove("t", 0)
	ct.reset("t", 0, h) // back, reads 100 and 101, finishes 100 only
	b := ct.lookup(tpKey{"t", 0})
	_, v0 := b.addRecord(100, recordID{epoch: -1})
	_, v1 := b.addRecord(101, recordID{epoch: -1})
	require.True(t, v0.skip && v1.skip)
	ct.remove("t", 0)
	ct.reset("t", 0, h)
	c := ct.lookup(tpKey{"t", 0})
	for off := int64(100); off < 106; off++ {
		_, v := c.addRecord(off, recordID{epoch: -1})
		require.Equal(t, off < 105, v.skip, "offset %d", off)
	}
}

// TestOwnWorkWaitsForAPendingHandover: when the assignment could not read the committed offset
// (handover.pending), the memory waits for the late read, is used when it comes, and outlives
// an assignment revoked before it read anything.
func TestOwnWorkWaitsForAPendingHandover(t *testing.T) {
	ct := newCommitTracker()
	h := handover{committed: 100, knowsCommitted: true}
	ct.reset("t", 0, h)
	a := ct.lookup(tpKey{"t", 0})
	a.finish(trackAdd(a, 100))
	ct.remove("t", 0)
	ct.reset("t", 0, handover{pending: true}) // revoked before a read
	ct.remove("t", 0)
	require.Zero(t, ct.pendingN.Load())
	ct.reset("t", 0, handover{pending: true})
	ct.reset("t", 1, handover{})
	b := ct.lookup(tpKey{"t", 0})
	_, again := ct.takePending(ct.lookup(tpKey{"t", 1}))
	require.False(t, again, "another partition is not pending")
	w, ok := ct.takePending(b)
	require.True(t, ok)
	_, ok = ct.takePending(b)
	require.False(t, ok, "taken once")
	require.Zero(t, ct.pendingN.Load())
	settle(b, h, w)
	_, v0 := b.addRecord(100, recordID{epoch: -1})
	_, v1 := b.addRecord(101, recordID{epoch: -1})
	require.Equal(t, []bool{true, false}, []bool{v0.skip, v1.skip})
}

// TestOwnWorkIsNotUsedWhenItMayBeAboutAnotherLog: the memory is dropped when the group's
// committed offset is unknown, below where the lost assignment began to read (a topic
// deleted and created again has none), or when it is too old.
func TestOwnWorkIsNotUsedWhenItMayBeAboutAnotherLog(t *testing.T) {
	for name, h := range map[string]handover{
		"committed unknown":       {committed: 100},
		"no committed offset":     {committed: -1001, knowsCommitted: true},
		"committed below its run": {committed: 99, knowsCommitted: true},
	} {
		t.Run(name, func(t *testing.T) {
			ct := newCommitTracker()
			ct.reset("t", 0, handover{committed: 100, knowsCommitted: true})
			a := ct.lookup(tpKey{"t", 0})
			a.finish(trackAdd(a, 100))
			ct.remove("t", 0)
			ct.reset("t", 0, h)
			_, v := ct.lookup(tpKey{"t", 0}).addRecord(100, recordID{epoch: -1})
			require.False(t, v.skip)
		})
	}
	w := &ownWork{from: 10, to: 20, at: time.Now().Add(-ownWorkMaxAge)}
	require.False(t, w.usable(15, time.Now()), "too old")
	require.True(t, w.usable(15, w.at.Add(ownWorkMaxAge-time.Second)))
}

// TestOwnWorkJudge: what the last commit says comes first.
func TestOwnWorkJudge(t *testing.T) {
	w := &ownWork{from: 10, to: 20, above: []int64{22, 25}}
	for _, c := range []struct {
		offset       int64
		v            readVerdict
		skip, finish bool
		forget       bool
		careful      bool
	}{
		{offset: 12, skip: true, finish: true},
		{offset: 21},
		{offset: 22, skip: true, finish: true},
		{offset: 25, skip: true, finish: true, forget: true},
		{offset: 26, forget: true},
		{offset: 12, v: readVerdict{skip: true}, skip: true},                  // the commit finished it: the tracker did
		{offset: 12, v: readVerdict{careful: true, deaths: 1}, careful: true}, // a suspect: as the commit says
		{offset: 12, v: readVerdict{mismatch: true}, forget: true},            // another log
	} {
		v, finish, forget := w.judge(c.offset, c.v)
		require.Equal(t, c.skip, v.skip, "%+v", c)
		require.Equal(t, c.finish, finish, "%+v", c)
		require.Equal(t, c.forget, forget, "%+v", c)
		require.Equal(t, c.careful, v.careful, "%+v", c)
	}
}
