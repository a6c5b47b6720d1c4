package commit

import (
	"math/rand/v2"
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
			ct := NewTracker()
			pt := ct.Get("t", 0)
			seqs := make([]uint64, len(tt.read))
			for i, off := range tt.read {
				seqs[i] = trackAdd(pt, off)
			}
			for i, idx := range tt.finish {
				pt.Finish(seqs[idx])
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
	ct := NewTracker()
	pt := ct.Get("t", 0)
	const n = 1000 // far more than the initial ring of 64
	seqs := make([]uint64, n)
	for i := range seqs {
		seqs[i] = trackAdd(pt, int64(i))
	}
	for i := n - 1; i >= 1; i-- {
		pt.Finish(seqs[i])
	}
	_, ok := pt.take(time.Now())
	require.False(t, ok, "offset 0 unfinished holds everything")
	pt.Finish(seqs[0])
	got, ok := pt.take(time.Now())
	require.True(t, ok)
	require.Equal(t, int64(n), got)
}

func TestCommitTrackerStorableAndReset(t *testing.T) {
	ct := NewTracker()
	a, b := ct.Get("t", 0), ct.Get("t", 1)
	a.Finish(trackAdd(a, 10))
	b.Finish(trackAdd(b, 20))
	got := ct.Storable(func(_ string, partition int32) bool { return partition == 1 })
	require.Equal(t, []Stored{{Topic: "t", Partition: 1, Offset: 21}}, got)
	require.Equal(t, []Stored{{Topic: "t", Partition: 0, Offset: 11}}, ct.Storable(nil))
	require.Empty(t, ct.Storable(nil))

	seq := trackAdd(a, 11)
	ct.Reset("t", 0, Handover{}) // assigned again: the old tracker is closed, a fresh one starts
	a.Finish(seq)
	require.Empty(t, ct.Storable(nil), "a completion for the old assignment is ignored")
	require.NotSame(t, a, ct.Get("t", 0))
}

// trackAdd records a message read at offset, whose record is unknown, and returns its
// sequence number.
func trackAdd(t *Partition, offset int64) uint64 {
	seq, _ := t.Read(offset, Record{Epoch: -1})
	return seq
}

// BenchmarkTrackerRandomFinish adds messages to a partition tracker and finishes them in a
// random order within a window of 1024 in-flight messages.
func BenchmarkTrackerRandomFinish(b *testing.B) {
	const window = 1024
	t := NewTracker().Get("t", 0)
	rng := rand.New(rand.NewPCG(1, 2))
	pending := make([]uint64, 0, window)
	off := int64(0)
	b.ReportAllocs()
	for b.Loop() {
		pending = append(pending, trackAdd(t, off))
		off++
		if len(pending) == window {
			i := rng.IntN(len(pending))
			t.Finish(pending[i])
			pending[i] = pending[len(pending)-1]
			pending = pending[:len(pending)-1]
		}
	}
	for _, s := range pending {
		t.Finish(s)
	}
	if _, ok := t.take(time.Now()); !ok {
		b.Fatal("nothing to store")
	}
}

// TestGetAgainKeepsThePartitionUntilItIsReplaced: GetAgain gives back the Partition it was
// given while the Tracker holds it for that partition, and the Tracker's own once Reset or
// Remove let go of it.
func TestGetAgainKeepsThePartitionUntilItIsReplaced(t *testing.T) {
	ct := NewTracker()
	p := ct.GetAgain(nil, "t", 0)
	require.Same(t, p, ct.Get("t", 0))
	require.Same(t, p, ct.GetAgain(p, "t", 0))
	other := ct.GetAgain(p, "t", 1)
	require.NotSame(t, p, other, "another partition")
	require.Same(t, other, ct.Get("t", 1))
	require.Same(t, ct.Get("u", 0), ct.GetAgain(p, "u", 0), "another topic")

	ct.Reset("t", 0, Handover{})
	fresh := ct.GetAgain(p, "t", 0)
	require.NotSame(t, p, fresh, "reset: the fresh Partition")
	require.Same(t, ct.Get("t", 0), fresh)

	ct.Remove("t", 0)
	again := ct.GetAgain(fresh, "t", 0)
	require.NotSame(t, fresh, again, "removed: a new one")
	require.Same(t, ct.Get("t", 0), again)
}
