package zkafka

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Each case reads offsets, finishes some by sequence number, and checks the offset to store.
func TestPartitionTrackerTransitions(t *testing.T) {
	tests := []struct {
		name    string
		read    []int64
		finish  []int // indexes into read
		want    int64 // -1: nothing to store
		closeAt int   // finish index after which the tracker is closed; -1 never
	}{
		{name: "nothing finished", read: []int64{0, 1, 2}, want: -1, closeAt: -1},
		{name: "head finished", read: []int64{0, 1, 2}, finish: []int{0}, want: 1, closeAt: -1},
		{name: "later finished, head not", read: []int64{0, 1, 2}, finish: []int{2, 1}, want: -1, closeAt: -1},
		{name: "gap closed by the head", read: []int64{0, 1, 2}, finish: []int{2, 1, 0}, want: 3, closeAt: -1},
		{name: "offset gaps (compaction, markers)", read: []int64{5, 9, 20}, finish: []int{0, 1}, want: 10, closeAt: -1},
		{name: "finishing twice is harmless", read: []int64{0, 1}, finish: []int{0, 0}, want: 1, closeAt: -1},
		{name: "completions after close are ignored", read: []int64{0, 1}, finish: []int{0, 1}, want: 1, closeAt: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := newCommitTracker()
			pt := ct.get("t", 0)
			seqs := make([]uint64, len(tt.read))
			for i, off := range tt.read {
				seqs[i] = trackAdd(pt, off)
			}
			for i, idx := range tt.finish {
				pt.finish(seqs[idx])
				if i == tt.closeAt {
					if got, ok := pt.take(time.Now()); ok {
						require.Equal(t, tt.want, got)
					}
					pt.close()
				}
			}
			got, ok := int64(-1), false
			if tt.closeAt < 0 {
				got, ok = pt.take(time.Now())
			}
			if tt.want < 0 || tt.closeAt >= 0 {
				require.False(t, ok, "nothing to store, got %d", got)
				return
			}
			require.True(t, ok)
			require.Equal(t, tt.want, got)
			_, again := pt.take(time.Now())
			require.False(t, again, "take clears the dirty flag")
		})
	}
}

func TestPartitionTrackerGrowsPastItsRing(t *testing.T) {
	ct := newCommitTracker()
	pt := ct.get("t", 0)
	const n = 1000 // far more than the initial ring of 64
	seqs := make([]uint64, n)
	for i := range seqs {
		seqs[i] = trackAdd(pt, int64(i))
	}
	for i := n - 1; i >= 1; i-- {
		pt.finish(seqs[i])
	}
	_, ok := pt.take(time.Now())
	require.False(t, ok, "offset 0 unfinished holds everything")
	pt.finish(seqs[0])
	got, ok := pt.take(time.Now())
	require.True(t, ok)
	require.Equal(t, int64(n), got)
}

func TestCommitTrackerStorableAndReset(t *testing.T) {
	ct := newCommitTracker()
	a, b := ct.get("t", 0), ct.get("t", 1)
	a.finish(trackAdd(a, 10))
	b.finish(trackAdd(b, 20))
	got := ct.storable(func(k tpKey) bool { return k.partition == 1 })
	require.Equal(t, []storedOffset{{tpKey: tpKey{"t", 1}, offset: 21}}, got)
	require.Equal(t, []storedOffset{{tpKey: tpKey{"t", 0}, offset: 11}}, ct.storable(nil))
	require.Empty(t, ct.storable(nil))

	seq := trackAdd(a, 11)
	ct.reset("t", 0, handover{}) // assigned again: the old tracker is closed, a fresh one starts
	a.finish(seq)
	require.Empty(t, ct.storable(nil), "a completion for the old assignment is ignored")
	require.NotSame(t, a, ct.get("t", 0))
}

// trackAdd records a message read at offset, whose record is unknown, and returns its
// sequence number.
func trackAdd(t *partitionTracker, offset int64) uint64 {
	seq, _ := t.addRecord(offset, recordID{epoch: -1})
	return seq
}

// TestCommitDueAfterABurst: a periodic commit is due commitEvery after the last, or
// commitBurstGap after it once commitBurst messages were read since.
func TestCommitDueAfterABurst(t *testing.T) {
	o := &offsetStore{every: commitEvery}
	t0 := time.Unix(1000, 0)
	o.lastCommit.Store(t0.UnixNano())
	require.False(t, o.due(t0.Add(commitBurstGap)), "no burst")
	require.True(t, o.due(t0.Add(commitEvery)))
	o.reads.Store(commitBurst - 1)
	require.False(t, o.due(t0.Add(commitBurstGap)))
	o.reads.Add(1)
	require.False(t, o.due(t0.Add(commitBurstGap-time.Millisecond)), "too soon after the last commit")
	require.True(t, o.due(t0.Add(commitBurstGap)))
}
