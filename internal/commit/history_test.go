package commit

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
	ct := NewTracker()
	ct.Reset("t", 0, Handover{committed: 100, knowsCommitted: true})
	a := ct.Lookup("t", 0)
	seqs := map[int64]uint64{}
	for off := int64(100); off < 110; off++ {
		seqs[off] = trackAdd(a, off)
	}
	for _, off := range []int64{100, 101, 102, 103, 105, 108} {
		a.Finish(seqs[off]) // 104 (in a handler), 106, 107 and 109 (queued) are not
	}
	ct.Remove("t", 0) // revoked; its commit failed: the group's offset is still 100

	ct.Reset("t", 0, Handover{committed: 100, knowsCommitted: true})
	b := ct.Lookup("t", 0)
	var skipped, run []int64
	for off := int64(100); off < 112; off++ {
		if _, v := b.Read(off, Record{Epoch: -1}); v.Action() == Skip {
			skipped = append(skipped, off)
		} else {
			run = append(run, off)
		}
	}
	require.Equal(t, []int64{100, 101, 102, 103, 105, 108}, skipped)
	require.Equal(t, []int64{104, 106, 107, 109, 110, 111}, run)
	require.Nil(t, b.history.own, "forgotten once read past")
	require.Equal(t, []Stored{{Topic: "t", Partition: 0, Offset: 104}}, ct.Storable(nil),
		"the skipped prefix is finished: the offset moves to the first one that runs")
}

// TestOwnWorkOutlivesAnAssignmentThatReadNothing: the partition comes back, is revoked again
// before anything is read, then comes back once more: what the first assignment finished is
// still skipped. An assignment that read some of it keeps the rest too.
func TestOwnWorkOutlivesAnAssignmentThatReadNothing(t *testing.T) {
	ct := NewTracker()
	h := Handover{committed: 100, knowsCommitted: true}
	ct.Reset("t", 0, h)
	a := ct.Lookup("t", 0)
	for off := int64(100); off < 105; off++ {
		a.Finish(trackAdd(a, off))
	}
	ct.Remove("t", 0)
	ct.Reset("t", 0, h) // back, and revoked before a read
	ct.Remove("t", 0)
	ct.Reset("t", 0, h) // back, reads 100 and 101, finishes 100 only
	b := ct.Lookup("t", 0)
	_, v0 := b.Read(100, Record{Epoch: -1})
	_, v1 := b.Read(101, Record{Epoch: -1})
	require.True(t, v0.Action() == Skip && v1.Action() == Skip)
	ct.Remove("t", 0)
	ct.Reset("t", 0, h)
	c := ct.Lookup("t", 0)
	for off := int64(100); off < 106; off++ {
		_, v := c.Read(off, Record{Epoch: -1})
		require.Equal(t, off < 105, v.Action() == Skip, "offset %d", off)
	}
}

// TestOwnWorkWaitsForAPendingHandover: when the assignment could not read the committed offset
// (PendingHandover), the memory waits for the late read, is used when it comes, and outlives
// an assignment revoked before it read anything.
func TestOwnWorkWaitsForAPendingHandover(t *testing.T) {
	ct := NewTracker()
	h := Handover{committed: 100, knowsCommitted: true}
	ct.Reset("t", 0, h)
	a := ct.Lookup("t", 0)
	a.Finish(trackAdd(a, 100))
	ct.Remove("t", 0)
	ct.Reset("t", 0, PendingHandover()) // revoked before a read
	ct.Remove("t", 0)
	require.Zero(t, ct.pendingN.Load())
	ct.Reset("t", 0, PendingHandover())
	ct.Reset("t", 1, Handover{})
	b := ct.Lookup("t", 0)
	_, again := ct.takePending(ct.Lookup("t", 1))
	require.False(t, again, "another partition is not pending")
	w, ok := ct.takePending(b)
	require.True(t, ok)
	_, ok = ct.takePending(b)
	require.False(t, ok, "taken once")
	require.Zero(t, ct.pendingN.Load())
	b.settle(h, w)
	_, v0 := b.Read(100, Record{Epoch: -1})
	_, v1 := b.Read(101, Record{Epoch: -1})
	require.Equal(t, []bool{true, false}, []bool{v0.Action() == Skip, v1.Action() == Skip})
}

// TestOwnWorkIsNotUsedWhenItMayBeAboutAnotherLog: the memory is dropped when the group's
// committed offset is unknown, below where the lost assignment began to read (a topic
// deleted and created again has none), or when it is too old.
func TestOwnWorkIsNotUsedWhenItMayBeAboutAnotherLog(t *testing.T) {
	for name, h := range map[string]Handover{
		"committed unknown":       {committed: 100},
		"no committed offset":     {committed: -1001, knowsCommitted: true},
		"committed below its run": {committed: 99, knowsCommitted: true},
	} {
		t.Run(name, func(t *testing.T) {
			ct := NewTracker()
			ct.Reset("t", 0, Handover{committed: 100, knowsCommitted: true})
			a := ct.Lookup("t", 0)
			a.Finish(trackAdd(a, 100))
			ct.Remove("t", 0)
			ct.Reset("t", 0, h)
			_, v := ct.Lookup("t", 0).Read(100, Record{Epoch: -1})
			require.False(t, v.Action() == Skip)
		})
	}
	w := &ownWork{from: 10, to: 20, at: time.Now().Add(-ownWorkMaxAge)}
	require.False(t, w.usable(15, time.Now()), "too old")
	require.True(t, w.usable(15, w.at.Add(ownWorkMaxAge-time.Second)))
}

// TestHistoryJudge: what the last commit says comes first; what this reader finished before
// decides only for a message the commit says nothing of, and is forgotten once read past or
// when the commit turns out to be about another log.
func TestHistoryJudge(t *testing.T) {
	id := Record{Stamp: 112, Epoch: 2}
	commitAt12 := func(c Completions) *prior { // a commit whose base is offset 12, record id
		c.Base, c.Stamp, c.Epoch, c.Read = 12, id.Stamp, id.Epoch, max(c.Read, 12)
		return newPrior(&c)
	}
	for _, c := range []struct {
		name   string
		offset int64
		prior  *prior
		want   Outcome
		forget bool
	}{
		{name: "finished in the run", offset: 12, want: Outcome{action: Skip}},
		{name: "not finished", offset: 21},
		{name: "finished above the run", offset: 22, want: Outcome{action: Skip}},
		{name: "the last finished", offset: 25, want: Outcome{action: Skip}, forget: true},
		{name: "past it all", offset: 26, forget: true},
		{name: "the commit finished it", offset: 12, prior: commitAt12(Completions{Released: true, Runs: []uint64{0, 1}}), want: Outcome{action: Skip}},
		{name: "a suspect of the commit", offset: 12, prior: commitAt12(Completions{Released: true, Suspects: []Suspect{{Offset: 12, Deaths: 1}}}), want: Outcome{action: Hold, deaths: 1}},
		{name: "maybe in a handler at a death", offset: 12, prior: commitAt12(Completions{}), want: Outcome{action: Hold}},
		{name: "a commit about another log", offset: 12, prior: newPrior(&Completions{Base: 12, Stamp: 1, Read: 12}), want: Outcome{ignored: true}, forget: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := history{prior: c.prior, own: &ownWork{from: 10, to: 20, above: []int64{22, 25}}}
			require.Equal(t, c.want, h.judge(c.offset, id))
			require.Equal(t, c.forget, h.own == nil)
		})
	}
}

// TestPriorSkipsWhatTheLastCommitFinished reads a partition again after a commit with holes:
// the finished messages are skipped, the rest run; a first record that is not the commit's
// base makes the whole metadata be ignored.
func TestPriorSkipsWhatTheLastCommitFinished(t *testing.T) {
	c := &Completions{Base: 11, Stamp: 111, Epoch: 2, Read: 15, Released: true, Runs: []uint64{1, 2, 1, 1}} // 12, 13, 15 finished
	p := newPrior(c)
	type got struct {
		skip, last bool
	}
	var gots []got
	for _, off := range []int64{11, 12, 13, 14, 15} {
		v, last := p.check(off, Record{Stamp: 100 + off, Epoch: 2})
		require.NotEqual(t, Hold, v.Action(), "released: nobody died")
		gots = append(gots, got{v.Action() == Skip, last})
	}
	require.Equal(t, []got{{false, false}, {true, false}, {true, false}, {false, false}, {true, true}}, gots)

	for _, tt := range []struct {
		name   string
		offset int64
		id     Record
	}{
		{name: "another record at the base offset", offset: 11, id: Record{Stamp: 999, Epoch: 2}},
		{name: "another leader epoch", offset: 11, id: Record{Stamp: 111, Epoch: 0}},
		{name: "the base record is gone", offset: 12, id: Record{Stamp: 112, Epoch: 2}},
	} {
		v, last := newPrior(c).check(tt.offset, tt.id)
		require.Equal(t, Outcome{ignored: true}, v, tt.name)
		require.True(t, last, tt.name)
	}
}

// TestPriorSuspects: after an owner died (its last commit not released), every unfinished
// message up to the highest offset it read is suspect, and those the commit names carry
// their deaths; after a release only those named are.
func TestPriorSuspects(t *testing.T) {
	c := Completions{Base: 10, Stamp: 110, Epoch: 1, Read: 14, Runs: []uint64{1, 1}, Suspects: []Suspect{{Offset: 12, Deaths: 2}, {Offset: 20, Deaths: 1}}}
	id := func(off int64) Record { return Record{Stamp: 100 + off, Epoch: 1} }
	type got struct {
		v    Outcome
		last bool
	}
	check := func(c Completions, offs ...int64) []got {
		p := newPrior(&c)
		var out []got
		for _, off := range offs {
			v, last := p.check(off, id(off))
			out = append(out, got{v, last})
		}
		return out
	}
	require.Equal(t, []got{
		{Outcome{action: Hold}, false},
		{Outcome{action: Skip}, false},
		{Outcome{action: Hold, deaths: 2}, false},
		{Outcome{action: Hold}, false},
		{Outcome{}, false},
		{Outcome{action: Hold, deaths: 1}, true},
	}, check(c, 10, 11, 12, 14, 15, 20))
	c.Released = true
	require.Equal(t, []got{
		{Outcome{}, false},
		{Outcome{action: Skip}, false},
		{Outcome{action: Hold, deaths: 2}, false},
		{Outcome{}, false},
		{Outcome{action: Hold, deaths: 1}, true},
	}, check(c, 10, 11, 12, 14, 20))
}
