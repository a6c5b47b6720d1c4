package zkafka

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestInFlightThresholds checks full, roomFor and halfFree at their edges, for messages and
// for bytes.
func TestInFlightThresholds(t *testing.T) {
	cases := []struct {
		name                    string
		maxMsgs                 int
		maxBytes                int64
		msgs                    int
		size                    int
		full, roomFor, halfFree bool
	}{
		{"empty", 100, 1000, 0, 0, false, true, true},
		{"half of the messages", 100, 1000, 50, 0, false, true, true},
		{"just over half", 100, 1000, 51, 0, false, true, false},
		{"a tenth free", 100, 1000, 90, 0, false, true, false},
		{"less than a tenth free", 100, 1000, 91, 0, false, false, false},
		{"one below the bound", 100, 1000, 99, 0, false, false, false},
		{"at the bound", 100, 1000, 100, 0, true, false, false},
		{"half of the bytes", 100, 1000, 1, 500, false, true, true},
		{"a tenth of the bytes free", 100, 1000, 1, 900, false, true, false},
		{"less than a tenth of the bytes free", 100, 1000, 1, 901, false, false, false},
		{"at the byte bound", 100, 1000, 1, 1000, true, false, false},
		{"bound of one: room only when empty", 1, 1000, 0, 0, false, true, true},
		{"bound of one, one in flight", 1, 1000, 1, 0, true, false, false},
		{"bound of five: a tenth rounds up to one", 5, 1000, 4, 0, false, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newInFlight(c.maxMsgs, c.maxBytes)
			for i := 0; i < c.msgs; i++ {
				b := 0
				if i == 0 {
					b = c.size
				}
				f.add(b)
			}
			require.Equal(t, c.full, f.full(), "full, before the reader publishes")
			f.publish()
			require.Equal(t, c.full, f.full(), "full")
			require.Equal(t, c.roomFor, f.roomFor(f.msgs.Load(), f.size.Load()), "roomFor")
			require.Equal(t, c.halfFree, f.halfFree(), "halfFree")
		})
	}
}

// TestInFlightWaitWakesOnRelease: a waiting reader wakes once releases make room, not before.
func TestInFlightWaitWakesOnRelease(t *testing.T) {
	f := newInFlight(100, 1<<20)
	for range 100 {
		f.add(1)
	}
	f.publish()
	woke := make(chan bool)
	go func() { woke <- f.wait(time.Hour, nil, nil) }()
	require.Eventually(t, f.wanted.Load, 5*time.Second, time.Millisecond)
	for range 9 {
		f.release(1) // down to 91 in flight: less than a tenth free
	}
	select {
	case <-woke:
		t.Fatal("woke without room")
	case <-time.After(20 * time.Millisecond):
	}
	f.release(1) // 90 in flight: room
	require.True(t, <-woke)
	require.False(t, f.wanted.Load())
	require.Equal(t, int64(90), f.msgs.Load())
	require.Equal(t, int64(90), f.size.Load())
}

// TestInFlightWaitTimesOutAndStops: without room, wait returns false at its timeout, and
// true at once when a stop channel closes.
func TestInFlightWaitTimesOutAndStops(t *testing.T) {
	f := newInFlight(1, 1<<20)
	f.add(0)
	f.publish()
	require.False(t, f.wait(time.Millisecond, nil, nil))
	require.False(t, f.wanted.Load(), "a timed-out wait no longer wants a signal")
	stop := make(chan struct{})
	close(stop)
	require.True(t, f.wait(time.Hour, stop, nil))
	require.True(t, f.wait(time.Hour, nil, stop))
}

// TestInFlightReaderSide: the reader's adds count toward the bound before they are published,
// the shared counts see them only at publish, and full, which decides from what the reader
// last saw of the shared counts, sees the releases made since once that says full.
func TestInFlightReaderSide(t *testing.T) {
	f := newInFlight(10, 1<<20)
	for range 6 {
		f.add(5)
	}
	require.Zero(t, f.msgs.Load(), "not published yet")
	require.Equal(t, int64(6), f.count())
	require.False(t, f.halfFree(), "6 of 10, unpublished")
	f.publish()
	require.Equal(t, int64(6), f.msgs.Load())
	require.Equal(t, int64(30), f.size.Load())
	for range 4 {
		f.add(5)
	}
	require.True(t, f.full(), "6 published and 4 not: at the bound")
	f.release(5) // a processor lets go of one: 9 in flight
	require.False(t, f.full(), "full looks again at the shared counts")
	f.publish()
	require.Equal(t, int64(9), f.msgs.Load())
	require.Equal(t, int64(9), f.count())
	f.add(5)
	require.True(t, f.full())
	for range 5 {
		f.release(5)
	}
	require.False(t, f.full())
	require.True(t, f.halfFree(), "5 of 10 with the unpublished one")
}
