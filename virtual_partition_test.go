package zkafka

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func newTestRouter(n, maxInFlight int) (*keyRouter, []*virtualPartition) {
	vps := make([]*virtualPartition, n)
	for i := range vps {
		vps[i] = newVirtualPartition(i)
	}
	return newKeyRouter(vps, maxInFlight), vps
}

func TestKeyRouterIdleRoutesByHash(t *testing.T) {
	r, vps := newTestRouter(8, 100)
	for i := range 100 {
		key := "key-" + strconv.Itoa(i)
		kr := r.route(key)
		require.Equal(t, routeKey(key, 8), kr.vp, "an idle Work routes by the hash")
		kr.done(vps[kr.vp])
	}
}

func TestKeyRouterKeyStaysWhileInFlight(t *testing.T) {
	r, vps := newTestRouter(4, 100)
	first := r.route("a")
	// Load the other virtual partitions' competitor counts so that "a" would move if it could.
	for i := range 20 {
		r.route("other-" + strconv.Itoa(i))
	}
	second := r.route("a")
	require.Same(t, first, second)
	require.Equal(t, first.vp, second.vp, "a key with a message in flight keeps its virtual partition (G2)")
	require.Equal(t, int64(2), first.inFlight.Load())
	vp := first.vp
	first.done(vps[vp])
	require.Equal(t, int64(1), vps[vp].keys.Load()-countOthers(r, vp), "the key still counts while one message is in flight")
	first.done(vps[vp])
	require.Equal(t, int64(0), first.inFlight.Load())
}

// countOthers counts keys other than "a" in flight on vp.
func countOthers(r *keyRouter, vp int) int64 {
	var n int64
	for k, kr := range r.keys {
		if k != "a" && kr.vp == vp && kr.inFlight.Load() > 0 {
			n++
		}
	}
	return n
}

func TestKeyRouterBalancesActiveKeys(t *testing.T) {
	r, _ := newTestRouter(64, 10000)
	for i := range 1000 {
		r.route("key-" + strconv.Itoa(i))
	}
	for _, vp := range r.vps {
		k := vp.keys.Load()
		require.GreaterOrEqual(t, k, int64(15))
		require.LessOrEqual(t, k, int64(16), "1000 active keys over 64 virtual partitions: 15 or 16 each")
	}
}

func TestKeyRouterSweepBoundsTheMap(t *testing.T) {
	r, vps := newTestRouter(4, 10)
	for i := range 10000 {
		kr := r.route("key-" + strconv.Itoa(i))
		kr.done(vps[kr.vp])
	}
	require.LessOrEqual(t, len(r.keys), r.sweepN)
	require.Less(t, len(r.keys), 10000, "keys with nothing in flight are forgotten (G8)")
	for _, vp := range vps {
		require.Zero(t, vp.keys.Load())
	}
}

func TestDefaultInFlightBoundGrowsWithSpeedup(t *testing.T) {
	f := NewWorkFactory(NewClient(Config{BootstrapServers: []string{"127.0.0.1:1"}}))
	proc := func(context.Context, *Message) error { return nil }
	tc := ConsumerTopicConfig{ClientID: "c", GroupID: "g", Topic: "t"}
	for _, tt := range []struct {
		name string
		opts []WorkOption
		want int
	}{
		{"speedup 1", nil, 10000},
		{"speedup 125", []WorkOption{Speedup(125)}, 10000},
		{"speedup 126", []WorkOption{Speedup(126)}, 10080},
		{"speedup 256", []WorkOption{Speedup(256)}, 20480},
		{"speedup 1250 reaches the cap", []WorkOption{Speedup(1250)}, 100000},
		{"max speedup stays at the cap", []WorkOption{Speedup(65535)}, 100000},
		{"explicit bound before speedup", []WorkOption{MaxInFlight(300), Speedup(256)}, 300},
		{"explicit bound after speedup", []WorkOption{Speedup(256), MaxInFlight(300)}, 300},
		{"non-positive bound keeps the default", []WorkOption{Speedup(256), MaxInFlight(0), MaxInFlight(-1)}, 20480},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := f.CreateWithFunc(tc, proc, tt.opts...)
			require.Equal(t, tt.want, w.maxInFlight)
		})
	}
}
