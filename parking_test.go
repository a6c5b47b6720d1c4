package zkafka

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func pmsg(key string, partition int32, offset int64) *Message {
	return &Message{Topic: "t", Partition: partition, Key: key, Offset: offset, isKeyNil: key == ""}
}

// TestParkingKeepsKeyOrder walks a key through the parking: its failed message waits, later
// messages of the key join behind it, other keys do not, and each settled turn makes the next
// message of the key due at once.
func TestParkingKeepsKeyOrder(t *testing.T) {
	var pk parking
	t0 := time.Now()
	a0, a1, a2, b0 := pmsg("a", 0, 0), pmsg("a", 0, 1), pmsg("a", 0, 2), pmsg("b", 0, 3)
	aOther := pmsg("a", 1, 0) // the same key on another partition has no order with a0

	require.False(t, pk.active())
	pk.park(a0, t0.Add(time.Second), time.Time{}, nil)
	require.True(t, pk.join(a1))
	require.False(t, pk.join(b0), "another key runs on")
	require.False(t, pk.join(aOther), "the same key of another partition runs on")
	require.True(t, pk.join(a2))

	m, wait := pk.take(t0)
	require.Nil(t, m, "not due yet")
	require.Equal(t, time.Second, wait)

	m, _ = pk.take(t0.Add(time.Second))
	require.Same(t, a0, m)
	require.True(t, m.taken)
	m, wait = pk.take(t0.Add(time.Hour))
	require.Nil(t, m, "nothing else of the key runs while a0 runs")
	require.Zero(t, wait)
	require.True(t, pk.join(pmsg("a", 0, 4)), "a popped message still joins while a0 runs")

	pk.park(a0, t0.Add(2*time.Second), time.Time{}, nil) // fails again
	m, _ = pk.take(t0.Add(2 * time.Second))
	require.Same(t, a0, m, "the retried message is still first")
	pk.settle(a0, t0.Add(2*time.Second)) // finished
	for _, want := range []int64{1, 2, 4} {
		m, _ = pk.take(t0.Add(2 * time.Second))
		require.NotNil(t, m)
		require.Equal(t, want, m.Offset)
		pk.settle(m, t0)
	}
	require.False(t, pk.active(), "the key is forgotten once its last message settled")
	require.False(t, pk.join(pmsg("a", 0, 5)))
}

func TestParkingDueOrderAndNilKeys(t *testing.T) {
	var pk parking
	t0 := time.Now()
	late, early, n1, n2 := pmsg("late", 0, 0), pmsg("early", 0, 1), pmsg("", 0, 2), pmsg("", 0, 3)
	pk.park(late, t0.Add(3*time.Second), time.Time{}, nil)
	pk.park(n1, t0.Add(2*time.Second), time.Time{}, nil)
	pk.park(early, t0.Add(time.Second), time.Time{}, nil)
	require.False(t, pk.join(n2), "nil keys promise no order: never parked behind another")
	var got []*Message
	for {
		m, _ := pk.take(t0.Add(time.Hour))
		if m == nil {
			break
		}
		got = append(got, m)
		pk.settle(m, t0)
	}
	require.Equal(t, []*Message{early, n1, late}, got)
	require.False(t, pk.active())
}

func TestParkingRemoveIf(t *testing.T) {
	var pk parking
	t0 := time.Now()
	a0, a1 := pmsg("a", 0, 0), pmsg("a", 0, 1)
	b0, b1 := pmsg("b", 1, 0), pmsg("b", 1, 1)
	c0, c1 := pmsg("c", 0, 5), pmsg("c", 0, 6)
	n := pmsg("", 0, 7)
	pk.park(a0, t0, time.Time{}, nil)
	pk.join(a1)
	pk.park(b0, t0, time.Time{}, nil)
	pk.join(b1)
	pk.park(c0, t0.Add(time.Minute), time.Time{}, nil)
	m, _ := pk.take(t0)
	require.NotNil(t, m)
	taken := m // a0 or b0, running
	pk.join(c1)
	pk.park(n, t0, time.Time{}, nil)

	dropped := pk.removeIf(func(m *Message) bool { return m.Partition == 0 })
	require.ElementsMatch(t, func() []*Message {
		out := []*Message{c0, c1, n}
		if taken == a0 {
			return append(out, a1)
		}
		return append(out, a0, a1)
	}(), dropped)

	// What is left: partition 1's key b, whole.
	var left []*Message
	if taken == b0 {
		left = append(left, b0)
		pk.settle(b0, t0)
	} else {
		pk.settle(taken, t0) // a0 of the revoked partition settles: its key is forgotten
	}
	for {
		m, _ := pk.take(t0.Add(time.Hour))
		if m == nil {
			break
		}
		left = append(left, m)
		pk.settle(m, t0)
	}
	require.Equal(t, []*Message{b0, b1}, left)
	require.False(t, pk.active())
	require.Empty(t, pk.removeAll())
}
