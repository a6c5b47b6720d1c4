package zkafka

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDispatcherRoute: nil keys go round-robin, keys to their router's choice, and one virtual
// partition takes everything.
func TestDispatcherRoute(t *testing.T) {
	vps := []*virtualPartition{newVirtualPartition(0), newVirtualPartition(1), newVirtualPartition(2)}
	l := &readLoop{rs: &runState{vps: vps}, router: newKeyRouter(vps, 100)}
	var got []int
	for range 4 {
		got = append(got, l.route(&Message{isKeyNil: true}))
	}
	require.Equal(t, []int{1, 2, 0, 1}, got, "nil keys round-robin")

	m := &Message{Key: "k"}
	idx := l.route(m)
	require.Equal(t, routeKey("k", 3), idx, "an idle router routes by the hash")
	require.NotNil(t, m.route, "the route travels with the message")
	require.Equal(t, idx, l.route(&Message{Key: "k"}), "a key in flight stays put")

	hash := &readLoop{rs: &runState{vps: vps}} // HashRouting
	m = &Message{Key: "k"}
	require.Equal(t, routeKey("k", 3), hash.route(m))
	require.Nil(t, m.route)

	one := &readLoop{rs: &runState{vps: vps[:1]}}
	require.Equal(t, 0, one.route(&Message{Key: "k"}))
	require.Equal(t, 0, one.route(&Message{isKeyNil: true}))
}
