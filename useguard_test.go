package zkafka

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestUseGuard(t *testing.T) {
	t.Run("close with no call in progress is idle at once", func(t *testing.T) {
		var g useGuard
		idle, first := g.close()
		require.True(t, first)
		requireClosedChan(t, idle)
		require.True(t, g.isClosed())
		require.False(t, g.enter(), "no call starts after close")
	})
	t.Run("close waits for every call in progress, nested ones too", func(t *testing.T) {
		var g useGuard
		require.True(t, g.enter())
		require.True(t, g.enter())
		idle, _ := g.close()
		require.False(t, g.enter())
		g.leave()
		requireOpenChan(t, idle)
		g.leave()
		requireClosedChan(t, idle)
	})
	t.Run("close twice", func(t *testing.T) {
		var g useGuard
		g.close()
		idle, first := g.close()
		require.False(t, first)
		require.Nil(t, idle)
	})
}

func TestAfterIdle(t *testing.T) {
	idle := make(chan struct{})
	close(idle)
	ran := false
	gone, inTime := afterIdle(idle, time.Hour, func() { ran = true })
	require.True(t, inTime)
	require.True(t, ran)
	requireClosedChan(t, gone)

	idle, release := make(chan struct{}), make(chan struct{})
	gone, inTime = afterIdle(idle, time.Millisecond, func() { <-release })
	require.False(t, inTime, "a call in progress outlives the wait")
	close(idle)
	requireOpenChan(t, gone)
	close(release)
	<-gone
}

func requireClosedChan(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	default:
		t.Fatal("channel not closed")
	}
}

func requireOpenChan(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
		t.Fatal("channel closed")
	default:
	}
}
