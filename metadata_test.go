package zkafka

import (
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCompletionsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		c    completions
	}{
		{name: "nothing finished above the base", c: completions{base: 7, stamp: 1700000000000, epoch: 3, read: 7}},
		{name: "released, a few runs", c: completions{base: 0, stamp: -1, epoch: -1, read: 40, released: true, runs: []uint64{1, 5, 2, 30}}},
		{name: "large offsets and long runs", c: completions{base: 1 << 50, stamp: 1, epoch: 1<<31 - 1, read: 1<<50 + 1<<30, runs: []uint64{300, 1 << 20, 1, 1}}},
		{name: "base finished (first run 0)", c: completions{base: 9, read: 9, runs: []uint64{0, 1, 4, 2}}},
		{name: "suspects", c: completions{base: 100, read: 130, suspects: []suspect{{offset: 100, deaths: 2}, {offset: 120, deaths: 1}}, runs: []uint64{3, 4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md, truncated := tt.c.encode(metadataMaxBytes)
			require.False(t, truncated)
			require.True(t, strings.HasPrefix(md, metadataPrefix), md)
			got, err := decodeCompletions(md)
			require.NoError(t, err)
			require.Equal(t, tt.c.base, got.base)
			require.Equal(t, tt.c.stamp, got.stamp)
			require.Equal(t, tt.c.epoch, got.epoch)
			require.Equal(t, tt.c.read, got.read)
			require.Equal(t, tt.c.released, got.released)
			require.Equal(t, len(tt.c.runs), len(got.runs))
			for i := range tt.c.runs {
				require.Equal(t, tt.c.runs[i], got.runs[i])
			}
			require.Equal(t, tt.c.suspects, got.suspects)
		})
	}
}

// TestCompletionsSizeAtTheBrokerLimit encodes the worst cases for the broker's default
// offset.metadata.max.bytes (4096): finished and unfinished messages alternating one by one,
// and runs of random lengths (which deflate cannot shrink much). Every encoding fits, and what
// does not fit is cut to a prefix ending with a finished run, reported as truncated.
func TestCompletionsSizeAtTheBrokerLimit(t *testing.T) {
	alternating := make([]uint64, 20000) // 20,000 offsets: 10,000 holes
	for i := range alternating {
		alternating[i] = 1
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]uint64, 20000)
	for i := range random {
		random[i] = 1 + uint64(rng.IntN(120))
	}
	for _, tt := range []struct {
		name          string
		runs          []uint64
		wantTruncated bool
	}{
		{name: "alternating: deflated, all of it fits", runs: alternating, wantTruncated: false},
		{name: "random runs: a prefix fits", runs: random, wantTruncated: true},
		{name: "alternating, just under the raw limit", runs: alternating[:1500], wantTruncated: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := completions{base: 1 << 40, stamp: 1700000000000, epoch: 12, read: 1<<40 + 1<<30, runs: tt.runs,
				suspects: []suspect{{offset: 1 << 40, deaths: 2}}}
			md, truncated := c.encode(metadataMaxBytes)
			require.LessOrEqual(t, len(md), metadataMaxBytes)
			require.Equal(t, tt.wantTruncated, truncated)
			got, err := decodeCompletions(md)
			require.NoError(t, err)
			require.Equal(t, c.suspects, got.suspects)
			require.Zero(t, len(got.runs)%2, "ends with a finished run")
			require.Equal(t, tt.runs[:len(got.runs)], got.runs, "a prefix of the runs")
			if !truncated {
				require.Len(t, got.runs, len(tt.runs))
				return
			}
			// Raw, a prefix of 1 byte per run fits about 3,000 runs: deflated, at least that.
			require.Greater(t, len(got.runs), 2900)
			longer := c
			longer.runs = tt.runs[:len(got.runs)+2]
			_, cut := longer.encode(metadataMaxBytes)
			require.True(t, cut, "one more pair does not fit")
		})
	}
}

func TestCompletionsEncodeWithoutRoom(t *testing.T) {
	c := completions{base: 5, read: 9, runs: []uint64{1, 3}}
	md, truncated := c.encode(10)
	require.True(t, truncated)
	require.Empty(t, md)
}

func TestDecodeCompletionsRejects(t *testing.T) {
	good, _ := (&completions{base: 3, read: 5, runs: []uint64{1, 1}}).encode(metadataMaxBytes)
	raw, err := base64.RawStdEncoding.DecodeString(good[len(metadataPrefix):])
	require.NoError(t, err)
	reseal := func(mut func([]byte) []byte) string {
		b := mut(append([]byte(nil), raw[:len(raw)-4]...))
		return seal(b)
	}
	for _, tt := range []struct {
		name, md string
		foreign  bool
	}{
		{name: "empty", md: "", foreign: true},
		{name: "another library's", md: "eyJvZmZzZXRzIjpbMSwyXX0=", foreign: true},
		{name: "not base64", md: metadataPrefix + "!!!!"},
		{name: "too short", md: metadataPrefix + "AQ"},
		{name: "checksum", md: good[:len(good)-2] + "AA"},
		{name: "version 2", md: reseal(func(b []byte) []byte { b[0] = 2; return b })},
		{name: "unknown flag", md: reseal(func(b []byte) []byte { b[1] |= 0x80; return b })},
		{name: "odd number of runs", md: reseal(func(b []byte) []byte { return append(b, 1) })},
		{name: "zero run", md: reseal(func(b []byte) []byte { return append(b, 0, 1) })},
		{name: "truncated varint", md: reseal(func(b []byte) []byte { return append(b, 0x80) })},
		{name: "deflate flag on raw runs", md: reseal(func(b []byte) []byte { b[1] |= flagDeflated; return b })},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeCompletions(tt.md)
			require.Error(t, err)
			if tt.foreign {
				require.ErrorIs(t, err, errForeignMetadata)
			} else {
				require.ErrorIs(t, err, errBadMetadata)
			}
		})
	}
}

// TestTrackerSnapshot checks what a commit carries for each state of a partition's tracker.
func TestTrackerSnapshot(t *testing.T) {
	tests := []struct {
		name     string
		read     []int64
		finish   []int // indexes into read
		offset   int64
		ok       bool
		runs     []uint64 // nil: no completions
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
			pt := newCommitTracker().get("t", 0)
			seqs := make([]uint64, len(tt.read))
			for i, off := range tt.read {
				seqs[i], _ = pt.addRecord(off, recordID{stamp: 100 + off, epoch: 2})
			}
			for _, i := range tt.finish {
				pt.finish(seqs[i])
			}
			offset, c, ok := pt.snapshot(false)
			require.Equal(t, tt.ok, ok)
			if !ok {
				return
			}
			require.Equal(t, tt.offset, offset)
			if tt.runs == nil {
				require.Nil(t, c)
			} else {
				require.NotNil(t, c)
				require.Equal(t, tt.base, c.base)
				require.Equal(t, 100+tt.base, c.stamp)
				require.Equal(t, int32(2), c.epoch)
				require.Equal(t, tt.readUpTo, c.read)
				require.Equal(t, tt.runs, append([]uint64{}, c.runs...))
			}
			_, _, again := pt.snapshot(false)
			require.False(t, again, "nothing changed since")
			_, _, forced := pt.snapshot(true)
			require.True(t, forced)
		})
	}
}

// TestTrackerSnapshotCarriesTheLastCommit: what the partition's last commit (the prior) says
// of offsets not read yet goes into the next commit, whether messages are unfinished or not.
func TestTrackerSnapshotCarriesTheLastCommit(t *testing.T) {
	prior := func() *prior { // 0 unfinished, 1-2 finished, 3-5 unfinished, 6-9 finished
		return newPrior(&completions{base: 0, stamp: 100, epoch: 2, read: 9, runs: []uint64{1, 2, 3, 4}})
	}
	id := func(off int64) recordID { return recordID{stamp: 100 + off, epoch: 2} }
	read := func(pt *partitionTracker, offs ...int64) []uint64 {
		var seqs []uint64
		for _, off := range offs {
			seq, _ := pt.addRecord(off, id(off))
			seqs = append(seqs, seq)
		}
		return seqs
	}

	ct := newCommitTracker()
	ct.reset("t", 0, handover{prior: prior()})
	pt := ct.get("t", 0)
	seqs := read(pt, 0, 1, 2, 3)
	offset, c, ok := pt.snapshot(false)
	require.True(t, ok)
	require.Equal(t, int64(0), offset)
	require.Equal(t, []uint64{1, 2, 3, 4}, c.runs, "0 and 3 unfinished, 1-2 skipped; 4-5 unfinished and 6-9 finished, as the last commit said")

	pt.finish(seqs[0])
	pt.finish(seqs[3])
	offset, c, ok = pt.snapshot(false)
	require.True(t, ok)
	require.Equal(t, int64(3), offset, "the last finished: the next owner reads it first and skips it")
	require.Equal(t, recordID{stamp: 103, epoch: 2}, recordID{stamp: c.stamp, epoch: c.epoch})
	require.Equal(t, []uint64{0, 1, 2, 4}, c.runs)

	seqs = read(pt, 4, 5, 6, 7, 8, 9)
	pt.finish(seqs[0])
	pt.finish(seqs[1])
	offset, c, ok = pt.snapshot(false)
	require.True(t, ok)
	require.Equal(t, int64(10), offset, "everything the last commit listed is read: nothing to carry")
	require.Nil(t, c)

	ct.reset("t", 0, handover{prior: prior()})
	pt = ct.get("t", 0)
	read(pt, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	require.Nil(t, pt.prior, "past the last commit's runs, nothing more to skip")
	offset, c, ok = pt.snapshot(false)
	require.True(t, ok)
	require.Equal(t, int64(0), offset)
	require.Equal(t, []uint64{1, 2, 3, 4}, c.runs, "0 and 3-5 unfinished, 1-2 and 6-9 skipped, 10 unfinished")
}

// TestTrackerDropsMessagesReadAgain: a message at or below the highest offset read in the
// assignment (librdkafka rewound the partition) is neither recorded nor run.
func TestTrackerDropsMessagesReadAgain(t *testing.T) {
	pt := newCommitTracker().get("t", 0)
	a, v := pt.addRecord(5, recordID{})
	require.Equal(t, readVerdict{}, v)
	_, v = pt.addRecord(5, recordID{})
	require.Equal(t, readVerdict{again: true}, v)
	_, v = pt.addRecord(3, recordID{})
	require.Equal(t, readVerdict{again: true}, v)
	b, v := pt.addRecord(6, recordID{})
	require.Equal(t, readVerdict{}, v)
	require.Equal(t, a+1, b)
	pt.finish(a)
	pt.finish(b)
	offset, c, ok := pt.snapshot(false)
	require.True(t, ok)
	require.Nil(t, c)
	require.Equal(t, int64(7), offset)
}

// TestPriorSkipsWhatTheLastCommitFinished reads a partition again after a commit with holes:
// the finished messages are skipped, the rest run; a first record that is not the commit's
// base makes the whole metadata be ignored.
func TestPriorSkipsWhatTheLastCommitFinished(t *testing.T) {
	c := &completions{base: 11, stamp: 111, epoch: 2, read: 15, released: true, runs: []uint64{1, 2, 1, 1}} // 12, 13, 15 finished
	p := newPrior(c)
	type got struct {
		skip, last bool
	}
	var gots []got
	for _, off := range []int64{11, 12, 13, 14, 15} {
		v, last := p.check(off, recordID{stamp: 100 + off, epoch: 2})
		require.False(t, v.careful, "released: nobody died")
		gots = append(gots, got{v.skip, last})
	}
	require.Equal(t, []got{{false, false}, {true, false}, {true, false}, {false, false}, {true, true}}, gots)

	for _, tt := range []struct {
		name   string
		offset int64
		id     recordID
	}{
		{name: "another record at the base offset", offset: 11, id: recordID{stamp: 999, epoch: 2}},
		{name: "another leader epoch", offset: 11, id: recordID{stamp: 111, epoch: 0}},
		{name: "the base record is gone", offset: 12, id: recordID{stamp: 112, epoch: 2}},
	} {
		v, last := newPrior(c).check(tt.offset, tt.id)
		require.Equal(t, readVerdict{mismatch: true}, v, tt.name)
		require.True(t, last, tt.name)
	}
}

// TestPriorSuspects: after an owner died (its last commit not released), every unfinished
// message up to the highest offset it read is suspect, and those the commit names carry
// their deaths; after a release only those named are.
func TestPriorSuspects(t *testing.T) {
	c := completions{base: 10, stamp: 110, epoch: 1, read: 14, runs: []uint64{1, 1}, suspects: []suspect{{offset: 12, deaths: 2}, {offset: 20, deaths: 1}}}
	id := func(off int64) recordID { return recordID{stamp: 100 + off, epoch: 1} }
	type got struct {
		v    readVerdict
		last bool
	}
	check := func(c completions, offs ...int64) []got {
		p := newPrior(&c)
		var out []got
		for _, off := range offs {
			v, last := p.check(off, id(off))
			out = append(out, got{v, last})
		}
		return out
	}
	require.Equal(t, []got{
		{readVerdict{careful: true}, false},
		{readVerdict{skip: true}, false},
		{readVerdict{careful: true, deaths: 2}, false},
		{readVerdict{careful: true}, false},
		{readVerdict{}, false},
		{readVerdict{careful: true, deaths: 1}, true},
	}, check(c, 10, 11, 12, 14, 15, 20))
	c.released = true
	require.Equal(t, []got{
		{readVerdict{}, false},
		{readVerdict{skip: true}, false},
		{readVerdict{careful: true, deaths: 2}, false},
		{readVerdict{}, false},
		{readVerdict{careful: true, deaths: 1}, true},
	}, check(c, 10, 11, 12, 14, 20))
}

// FuzzDecodeCompletions feeds arbitrary metadata to the decoder: it never panics, and what it
// accepts encodes and decodes back to itself.
func FuzzDecodeCompletions(f *testing.F) {
	for _, c := range []completions{
		{base: 3, read: 5, runs: []uint64{1, 1}},
		{base: 1 << 40, stamp: 1700000000000, epoch: 4, read: 1<<40 + 9, released: true, runs: []uint64{2, 3, 1, 1}, suspects: []suspect{{offset: 1<<40 + 2, deaths: 1}}},
	} {
		md, _ := c.encode(metadataMaxBytes)
		f.Add(md)
	}
	alt := make([]uint64, 6000)
	for i := range alt {
		alt[i] = 1
	}
	md, _ := (&completions{base: 1, read: 6001, runs: alt}).encode(metadataMaxBytes) // deflated
	f.Add(md)
	f.Add("")
	f.Add(metadataPrefix)
	f.Add(metadataPrefix + "AQAAAAAAAAA")
	f.Fuzz(func(t *testing.T, md string) {
		c, err := decodeCompletions(md)
		if err != nil {
			return
		}
		again, truncated := c.encode(1 << 30)
		require.False(t, truncated)
		back, err := decodeCompletions(again)
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
		c := completions{base: base, stamp: stamp, epoch: epoch, read: base + span, released: released, runs: runs,
			suspects: []suspect{{offset: base, deaths: 1}}}
		md, truncated := c.encode(int(limit))
		require.LessOrEqual(t, len(md), int(limit))
		if md == "" {
			require.True(t, truncated)
			return
		}
		got, err := decodeCompletions(md)
		require.NoError(t, err)
		require.Equal(t, c.base, got.base)
		require.Equal(t, c.read, got.read)
		require.Equal(t, c.released, got.released)
		require.Zero(t, len(got.runs)%2)
		require.LessOrEqual(t, len(got.runs), len(runs))
		require.Equal(t, runs[:len(got.runs)], append([]uint64{}, got.runs...))
		if !truncated {
			require.Len(t, got.runs, len(runs))
		}
	})
}

// TestTrackerSuspectsInCommits: a suspect in a handler counts one death more in a periodic
// commit (the process may die now), not in one that lets the partition go; one that finishes
// is forgotten.
func TestTrackerSuspectsInCommits(t *testing.T) {
	pt := newCommitTracker().get("t", 0)
	a, _ := pt.addRecord(0, recordID{})
	b, _ := pt.addRecord(1, recordID{})
	pt.mu.Lock()
	pt.suspect(0, 2, true)  // in a handler, died twice before
	pt.suspect(1, 0, true)  // in a handler, never died
	pt.suspect(7, 1, false) // read, waiting
	pt.mu.Unlock()
	_, c, ok := pt.snapshot(false)
	require.True(t, ok)
	require.Equal(t, []suspect{{0, 3}, {1, 1}, {7, 1}}, c.suspects)
	_, c, ok = pt.snapshot(true)
	require.True(t, ok)
	require.Equal(t, []suspect{{0, 2}, {7, 1}}, c.suspects, "released: nobody died")
	pt.finish(b)
	_, c, _ = pt.snapshot(false)
	require.Equal(t, []suspect{{0, 3}, {7, 1}}, c.suspects)
	pt.finish(a)
	_, c, _ = pt.snapshot(false)
	require.Nil(t, c, "nothing unfinished: offset 2 and no metadata")
}
