package commit

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
		c    Completions
	}{
		{name: "nothing finished above the base", c: Completions{Base: 7, Stamp: 1700000000000, Epoch: 3, Read: 7}},
		{name: "released, a few runs", c: Completions{Base: 0, Stamp: -1, Epoch: -1, Read: 40, Released: true, Runs: []uint64{1, 5, 2, 30}}},
		{name: "large offsets and long runs", c: Completions{Base: 1 << 50, Stamp: 1, Epoch: 1<<31 - 1, Read: 1<<50 + 1<<30, Runs: []uint64{300, 1 << 20, 1, 1}}},
		{name: "base finished (first run 0)", c: Completions{Base: 9, Read: 9, Runs: []uint64{0, 1, 4, 2}}},
		{name: "suspects", c: Completions{Base: 100, Read: 130, Suspects: []Suspect{{Offset: 100, Deaths: 2}, {Offset: 120, Deaths: 1}}, Runs: []uint64{3, 4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md, truncated := tt.c.Encode(MetadataMaxBytes)
			require.False(t, truncated)
			require.True(t, strings.HasPrefix(md, MetadataPrefix), md)
			got, err := Decode(md)
			require.NoError(t, err)
			require.Equal(t, tt.c.Base, got.Base)
			require.Equal(t, tt.c.Stamp, got.Stamp)
			require.Equal(t, tt.c.Epoch, got.Epoch)
			require.Equal(t, tt.c.Read, got.Read)
			require.Equal(t, tt.c.Released, got.Released)
			require.Equal(t, len(tt.c.Runs), len(got.Runs))
			for i := range tt.c.Runs {
				require.Equal(t, tt.c.Runs[i], got.Runs[i])
			}
			require.Equal(t, tt.c.Suspects, got.Suspects)
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
			c := Completions{Base: 1 << 40, Stamp: 1700000000000, Epoch: 12, Read: 1<<40 + 1<<30, Runs: tt.runs,
				Suspects: []Suspect{{Offset: 1 << 40, Deaths: 2}}}
			md, truncated := c.Encode(MetadataMaxBytes)
			require.LessOrEqual(t, len(md), MetadataMaxBytes)
			require.Equal(t, tt.wantTruncated, truncated)
			got, err := Decode(md)
			require.NoError(t, err)
			require.Equal(t, c.Suspects, got.Suspects)
			require.Zero(t, len(got.Runs)%2, "ends with a finished run")
			require.Equal(t, tt.runs[:len(got.Runs)], got.Runs, "a prefix of the runs")
			if !truncated {
				require.Len(t, got.Runs, len(tt.runs))
				return
			}
			// Raw, a prefix of 1 byte per run fits about 3,000 runs: deflated, at least that.
			require.Greater(t, len(got.Runs), 2900)
			longer := c
			longer.Runs = tt.runs[:len(got.Runs)+2]
			_, cut := longer.Encode(MetadataMaxBytes)
			require.True(t, cut, "one more pair does not fit")
		})
	}
}

func TestCompletionsEncodeWithoutRoom(t *testing.T) {
	c := Completions{Base: 5, Read: 9, Runs: []uint64{1, 3}}
	md, truncated := c.Encode(10)
	require.True(t, truncated)
	require.Empty(t, md)
}

func TestDecodeCompletionsRejects(t *testing.T) {
	good, _ := (&Completions{Base: 3, Read: 5, Runs: []uint64{1, 1}}).Encode(MetadataMaxBytes)
	raw, err := base64.RawStdEncoding.DecodeString(good[len(MetadataPrefix):])
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
		{name: "not base64", md: MetadataPrefix + "!!!!"},
		{name: "too short", md: MetadataPrefix + "AQ"},
		{name: "checksum", md: good[:len(good)-2] + "AA"},
		{name: "version 2", md: reseal(func(b []byte) []byte { b[0] = 2; return b })},
		{name: "unknown flag", md: reseal(func(b []byte) []byte { b[1] |= 0x80; return b })},
		{name: "odd number of runs", md: reseal(func(b []byte) []byte { return append(b, 1) })},
		{name: "zero run", md: reseal(func(b []byte) []byte { return append(b, 0, 1) })},
		{name: "truncated varint", md: reseal(func(b []byte) []byte { return append(b, 0x80) })},
		{name: "deflate flag on raw runs", md: reseal(func(b []byte) []byte { b[1] |= flagDeflated; return b })},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.md)
			require.Error(t, err)
			if tt.foreign {
				require.ErrorIs(t, err, ErrForeignMetadata)
			} else {
				require.ErrorIs(t, err, ErrBadMetadata)
			}
		})
	}
}
