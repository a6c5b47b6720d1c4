package commit

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTrackerSnapshot checks what a commit carries for each state of a partition's tracker.
func TestTrackerSnapshot(t *testing.T) {
	tests := []struct {
		name     string
		read     []int64
		finish   []int // indexes into read
		offset   int64
		ok       bool
		runs     []uint64 // nil: no Completions
		base     int64
		readUpTo int64
	}{
		{name: "nothing read", ok: false},
		{name: "nothing finished", read: []int64{0, 1, 2}, ok: true, offset: 0, runs: []uint64{}, base: 0, readUpTo: 2},
		{name: "all finished", read: []int64{0, 1, 2}, finish: []int{0, 1, 2}, ok: true, offset: 3},
		{name: "holes", read: []int64{10, 11, 12, 13, 14, 15}, finish: []int{0, 2, 3, 5}, ok: true, offset: 11, runs: []uint64{1, 2, 1, 1}, base: 11, readUpTo: 15},
		{name: "trailing unfinished left out", read: []int64{0, 1, 2, 3}, finish: []int{1}, ok: true, offset: 0, runs: []uint64{1, 1}, base: 0, readUpTo: 3},
		{name: "gaps count as unfinished", read: []int64{0, 1, 5, 6, 9}, finish: []int{1, 2, 3, 4}, ok: true, offset: 0, runs: []uint64{1, 1, 3, 2, 2, 1}, base: 0, readUpTo: 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt := NewTracker().Get("t", 0)
			seqs := make([]uint64, len(tt.read))
			for i, off := range tt.read {
				seqs[i], _ = pt.Read(off, Record{Stamp: 100 + off, Epoch: 2})
			}
			for _, i := range tt.finish {
				pt.Finish(seqs[i])
			}
			offset, c, ok := snap(pt, false)
			require.Equal(t, tt.ok, ok)
			if !ok {
				return
			}
			require.Equal(t, tt.offset, offset)
			if tt.runs == nil {
				require.Nil(t, c)
			} else {
				require.NotNil(t, c)
				require.Equal(t, tt.base, c.Base)
				require.Equal(t, 100+tt.base, c.Stamp)
				require.Equal(t, int32(2), c.Epoch)
				require.Equal(t, tt.readUpTo, c.Read)
				require.Equal(t, tt.runs, append([]uint64{}, c.Runs...))
			}
			_, _, again := snap(pt, false)
			require.False(t, again, "nothing changed since")
			_, _, forced := snap(pt, true)
			require.True(t, forced)
		})
	}
}

// TestTrackerSnapshotCarriesTheLastCommit: what the partition's last commit (the prior) says
// of offsets not read yet goes into the next commit, whether messages are unfinished or not.
func TestTrackerSnapshotCarriesTheLastCommit(t *testing.T) {
	prior := func() *prior { // 0 unfinished, 1-2 finished, 3-5 unfinished, 6-9 finished
		return newPrior(&Completions{Base: 0, Stamp: 100, Epoch: 2, Read: 9, Runs: []uint64{1, 2, 3, 4}})
	}
	id := func(off int64) Record { return Record{Stamp: 100 + off, Epoch: 2} }
	read := func(pt *Partition, offs ...int64) []uint64 {
		var seqs []uint64
		for _, off := range offs {
			seq, _ := pt.Read(off, id(off))
			seqs = append(seqs, seq)
		}
		return seqs
	}

	ct := NewTracker()
	ct.Reset("t", 0, Handover{prior: prior()})
	pt := ct.Get("t", 0)
	seqs := read(pt, 0, 1, 2, 3)
	offset, c, ok := snap(pt, false)
	require.True(t, ok)
	require.Equal(t, int64(0), offset)
	require.Equal(t, []uint64{1, 2, 3, 4}, c.Runs, "0 and 3 unfinished, 1-2 skipped; 4-5 unfinished and 6-9 finished, as the last commit said")

	pt.Finish(seqs[0])
	pt.Finish(seqs[3])
	offset, c, ok = snap(pt, false)
	require.True(t, ok)
	require.Equal(t, int64(3), offset, "the last finished: the next owner reads it first and skips it")
	require.Equal(t, Record{Stamp: 103, Epoch: 2}, Record{Stamp: c.Stamp, Epoch: c.Epoch})
	require.Equal(t, []uint64{0, 1, 2, 4}, c.Runs)

	seqs = read(pt, 4, 5, 6, 7, 8, 9)
	pt.Finish(seqs[0])
	pt.Finish(seqs[1])
	offset, c, ok = snap(pt, false)
	require.True(t, ok)
	require.Equal(t, int64(10), offset, "everything the last commit listed is read: nothing to carry")
	require.Nil(t, c)

	ct.Reset("t", 0, Handover{prior: prior()})
	pt = ct.Get("t", 0)
	read(pt, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	require.Nil(t, pt.history.prior, "past the last commit's runs, nothing more to skip")
	offset, c, ok = snap(pt, false)
	require.True(t, ok)
	require.Equal(t, int64(0), offset)
	require.Equal(t, []uint64{1, 2, 3, 4}, c.Runs, "0 and 3-5 unfinished, 1-2 and 6-9 skipped, 10 unfinished")
}

// TestTrackerDropsMessagesReadAgain: a message at or below the highest offset read in the
// assignment (librdkafka rewound the partition) is neither recorded nor run.
func TestTrackerDropsMessagesReadAgain(t *testing.T) {
	pt := NewTracker().Get("t", 0)
	a, v := pt.Read(5, Record{})
	require.Equal(t, Outcome{}, v)
	_, v = pt.Read(5, Record{})
	require.Equal(t, Outcome{action: Drop}, v)
	_, v = pt.Read(3, Record{})
	require.Equal(t, Outcome{action: Drop}, v)
	b, v := pt.Read(6, Record{})
	require.Equal(t, Outcome{}, v)
	require.Equal(t, a+1, b)
	pt.Finish(a)
	pt.Finish(b)
	offset, c, ok := snap(pt, false)
	require.True(t, ok)
	require.Nil(t, c)
	require.Equal(t, int64(7), offset)
}

// TestTrackerSuspectsInCommits: a suspect in a handler counts one death more in a periodic
// commit (the process may die now), not in one that lets the partition go; one that finishes
// is forgotten.
func TestTrackerSuspectsInCommits(t *testing.T) {
	pt := NewTracker().Get("t", 0)
	a, _ := pt.Read(0, Record{})
	b, _ := pt.Read(1, Record{})
	pt.mu.Lock()
	pt.sus.add(0, 2, true)  // in a handler, died twice before
	pt.sus.add(1, 0, true)  // in a handler, never died
	pt.sus.add(7, 1, false) // read, waiting
	pt.mu.Unlock()
	_, c, ok := snap(pt, false)
	require.True(t, ok)
	require.Equal(t, []Suspect{{0, 3}, {1, 1}, {7, 1}}, c.Suspects)
	_, c, ok = snap(pt, true)
	require.True(t, ok)
	require.Equal(t, []Suspect{{0, 2}, {7, 1}}, c.Suspects, "released: nobody died")
	pt.Finish(b)
	_, c, _ = snap(pt, false)
	require.Equal(t, []Suspect{{0, 3}, {7, 1}}, c.Suspects)
	pt.Finish(a)
	_, c, _ = snap(pt, false)
	require.Nil(t, c, "nothing unfinished: offset 2 and no metadata")
}

// snap is p.snapshot without the marks.
func snap(p *Partition, released bool) (offset int64, c *Completions, ok bool) {
	offset, c, _, ok = p.snapshot(released)
	return offset, c, ok
}
