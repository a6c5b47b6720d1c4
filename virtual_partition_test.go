package zkafka

import (
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

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

func TestRouteKeyIsStableAndSpread(t *testing.T) {
	// Pinned values: the mapping must not change between releases.
	require.Equal(t, []int{routeKey("", 7), routeKey("a", 7), routeKey("order-42", 64)}, []int{4, 0, 23})
	require.Equal(t, routeKey("order-42", 64), routeKey("order-42", 64))
	counts := make([]int, 8)
	for i := 0; i < 8000; i++ {
		counts[routeKey("key-"+string(rune('a'+i%26))+string(rune(i)), 8)]++
	}
	for i, c := range counts {
		require.InDelta(t, 1000, c, 200, "virtual partition %d got %d of 8000", i, c)
	}
}

// TestRouteKeySpread checks that typical keys spread over the virtual partitions: on a fixed
// sample of 100,000 keys, every virtual partition gets within 15% of its fair share and the
// chi-square statistic stays near its degrees of freedom, as a uniform hash's would. (32-bit
// FNV-1a alone fails this for sequential keys at large n: at n=1024, "k%d" gave chi-square/df
// 2.5 and buckets from 0.59 to 1.51 times the mean; the murmur3 finalizer fixes it.)
func TestRouteKeySpread(t *testing.T) {
	const keys = 100_000
	for _, n := range []int{2, 3, 8, 16, 64, 100, 1024} {
		for _, pattern := range []string{"k%d", "order-%08d", "user:%x"} {
			counts := make([]int, n)
			for i := range keys {
				counts[routeKey(fmt.Sprintf(pattern, i), n)]++
			}
			mean := float64(keys) / float64(n)
			var chi float64
			for i, c := range counts {
				d := float64(c) - mean
				chi += d * d / mean
				if math.Abs(d) > 0.15*mean+4*math.Sqrt(mean) {
					t.Errorf("n=%d pattern %q: virtual partition %d got %d keys, fair share %.0f", n, pattern, i, c, mean)
				}
			}
			df := float64(n - 1)
			if limit := df + 6*math.Sqrt(2*df) + 10; chi > limit {
				t.Errorf("n=%d pattern %q: chi-square %.1f above %.1f: keys are not spread evenly", n, pattern, chi, limit)
			}
		}
	}
}

// TestSecondSlowHandlerWithinEagerForMakesAProcessorEager: a processor becomes eager at its
// second handler of eagerAfter or longer within eagerFor (handlerRan), not at its first, nor
// at two that far apart, nor at fast ones; it counts as slow lately (slowLately) for eagerFor
// after its last slow handler.
func TestSecondSlowHandlerWithinEagerForMakesAProcessorEager(t *testing.T) {
	ran := func(vp *virtualPartition, end time.Time, took time.Duration) { vp.handlerRan(end.Add(-took), end) }
	now := time.Now()

	vp := newVirtualPartition(0)
	ran(vp, now.Add(-3*eagerFor), eagerAfter)
	require.False(t, vp.eager.Load(), "one slow handler is not enough")
	require.False(t, vp.slowLately(), "its slow handler ended longer than eagerFor ago")
	ran(vp, now.Add(-eagerFor-eagerFor/2), eagerAfter)
	require.False(t, vp.eager.Load(), "two slow handlers more than eagerFor apart")
	for range 10 {
		ran(vp, now.Add(-eagerFor-eagerFor/4), eagerAfter-time.Microsecond)
	}
	require.False(t, vp.eager.Load(), "handlers under eagerAfter are not slow")
	ran(vp, now.Add(-eagerFor), eagerAfter)
	require.True(t, vp.eager.Load(), "the second slow handler within eagerFor makes it eager")

	recent := newVirtualPartition(1)
	ran(recent, time.Now(), eagerAfter)
	require.True(t, recent.slowLately(), "a slow handler just ended")
	require.False(t, recent.eager.Load())
}
