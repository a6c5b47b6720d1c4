package commit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The fuzz targets of the commit tracker and its metadata codec. Run one with
//
//	go test -run '^$' -fuzz FuzzCommitTracker -fuzztime 2m ./internal/commit
//
// The seed corpora live in testdata/fuzz/<FuzzName>/ and run with every plain `go test`.

// FuzzCommitTracker runs a random sequence of reads (add) and completions (finish, in any
// order, with duplicates and stale sequence numbers) against a model. After every step the
// stored offset must be 1 + the offset of the last message of the longest finished prefix of
// the read order (-1 while that prefix is empty) — so it never passes an unfinished message —
// and finish must report a move exactly when the stored offset changed.
func FuzzCommitTracker(f *testing.F) {
	f.Add([]byte{0x80, 0x00})
	f.Add([]byte{0x81, 0x82, 0x83, 0x02, 0x01, 0x00})
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x03, 0x03, 0x01, 0x00, 0x7f, 0x02})
	f.Add([]byte{0xff, 0xfe, 0x00, 0x00, 0xc0, 0x01, 0x40})
	ops := make([]byte, 0, 400)
	for i := range 200 {
		ops = append(ops, 0x80|byte(i%5), byte(i*37))
	}
	f.Add(ops)
	f.Fuzz(func(t *testing.T, ops []byte) {
		owner := NewTracker()
		tr := owner.Get("t", 0)
		var model []modelEntry // read order
		var off int64 = -1
		stored := int64(-1)
		for step, op := range ops {
			if op&0x80 != 0 {
				off += 1 + int64(op&0x0f) // gaps, like compaction or transaction markers
				seq := trackAdd(tr, off)
				if n := len(model); n > 0 && seq != model[n-1].seq+1 {
					t.Fatalf("step %d: add returned seq %d after %d", step, seq, model[n-1].seq)
				}
				model = append(model, modelEntry{seq: seq, offset: off})
				continue
			}
			if len(model) == 0 {
				continue
			}
			i := pickToFinish(model, op)
			moved := tr.Finish(model[i].seq)
			model[i].done = true
			want := modelStored(model, stored)
			tr.mu.Lock()
			got := tr.order.next
			tr.mu.Unlock()
			if got != want {
				t.Fatalf("step %d: stored offset %d, model says %d (model %v)", step, got, want, model)
			}
			for _, e := range model {
				if !e.done && got > e.offset {
					t.Fatalf("step %d: stored offset %d passes unfinished offset %d", step, got, e.offset)
				}
			}
			if moved != (got != stored) {
				t.Fatalf("step %d: finish reported moved=%v but the stored offset went %d -> %d", step, moved, stored, got)
			}
			if moved {
				if o, ok := tr.take(time.Now()); !ok || o != got {
					t.Fatalf("step %d: take() = %d, %v after a move to %d", step, o, ok, got)
				}
			}
			stored = got
			// Drop the popped prefix from the model, as the ring does.
			for len(model) > 0 && model[0].done {
				model = model[1:]
			}
		}
	})
}

// modelEntry is a message read, in FuzzCommitTracker's model of the ring.
type modelEntry struct {
	seq    uint64
	offset int64
	done   bool
}

// pickToFinish chooses the entry op finishes: by its low bits, the next unfinished one from
// there, unless bit 6 replays a finish of an already finished (maybe popped) entry, which must
// change nothing.
func pickToFinish(model []modelEntry, op byte) int {
	i := int(op&0x3f) % len(model)
	if op&0x40 != 0 {
		return i
	}
	for j := range len(model) {
		if k := (i + j) % len(model); !model[k].done {
			return k
		}
	}
	return i
}

// modelStored is the offset to store the model says: 1 + the last offset of its finished
// prefix, or stored, the last one, when that prefix is empty (nothing popped stays -1).
func modelStored(model []modelEntry, stored int64) int64 {
	want := int64(-1)
	for _, e := range model {
		if !e.done {
			break
		}
		want = e.offset + 1
	}
	if want == -1 {
		return stored
	}
	return want
}

// FuzzDecodeCompletions feeds arbitrary metadata to the decoder: it never panics, and what it
// accepts encodes and decodes back to itself.
func FuzzDecodeCompletions(f *testing.F) {
	for _, c := range []Completions{
		{Base: 3, Read: 5, Runs: []uint64{1, 1}},
		{Base: 1 << 40, Stamp: 1700000000000, Epoch: 4, Read: 1<<40 + 9, Released: true, Runs: []uint64{2, 3, 1, 1}, Suspects: []Suspect{{Offset: 1<<40 + 2, Deaths: 1}}},
	} {
		md, _ := c.Encode(MetadataMaxBytes)
		f.Add(md)
	}
	alt := make([]uint64, 6000)
	for i := range alt {
		alt[i] = 1
	}
	md, _ := (&Completions{Base: 1, Read: 6001, Runs: alt}).Encode(MetadataMaxBytes) // deflated
	f.Add(md)
	f.Add("")
	f.Add(MetadataPrefix)
	f.Add(MetadataPrefix + "AQAAAAAAAAA")
	f.Fuzz(func(t *testing.T, md string) {
		c, err := Decode(md)
		if err != nil {
			return
		}
		again, truncated := c.Encode(1 << 30)
		require.False(t, truncated)
		back, err := Decode(again)
		require.NoError(t, err)
		require.Equal(t, c, back)
	})
}

// FuzzCompletionsRoundTrip encodes arbitrary completions under arbitrary limits: the metadata
// never exceeds the limit and decodes to the same completions with a prefix of the runs
// (all of them unless truncated is reported).
func FuzzCompletionsRoundTrip(f *testing.F) {
	f.Add(int64(0), int64(0), int32(-1), []byte{1, 1, 2, 3}, uint16(4096), true)
	f.Add(int64(1<<40), int64(-5), int32(7), []byte{200, 1, 1, 1, 9, 9}, uint16(40), false)
	f.Fuzz(func(t *testing.T, base, stamp int64, epoch int32, runBytes []byte, limit uint16, released bool) {
		if base < 0 || base > 1<<62 || epoch < -1 {
			return
		}
		runs := make([]uint64, 0, len(runBytes))
		span := int64(0)
		for _, b := range runBytes {
			runs = append(runs, 1+uint64(b))
			span += 1 + int64(b)
		}
		if len(runs)%2 == 1 {
			runs = runs[:len(runs)-1]
		}
		c := Completions{Base: base, Stamp: stamp, Epoch: epoch, Read: base + span, Released: released, Runs: runs,
			Suspects: []Suspect{{Offset: base, Deaths: 1}}}
		md, truncated := c.Encode(int(limit))
		require.LessOrEqual(t, len(md), int(limit))
		if md == "" {
			require.True(t, truncated)
			return
		}
		got, err := Decode(md)
		require.NoError(t, err)
		require.Equal(t, c.Base, got.Base)
		require.Equal(t, c.Read, got.Read)
		require.Equal(t, c.Released, got.Released)
		require.Zero(t, len(got.Runs)%2)
		require.LessOrEqual(t, len(got.Runs), len(runs))
		require.Equal(t, runs[:len(got.Runs)], append([]uint64{}, got.Runs...))
		if !truncated {
			require.Len(t, got.Runs, len(runs))
		}
	})
}
