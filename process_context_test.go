package zkafka

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestProcCtxBeforeDeadline(t *testing.T) {
	var c procCtx
	type key struct{}
	parent := context.WithValue(context.Background(), key{}, "v")
	deadline := time.Now().Add(time.Hour)
	c.start(parent, deadline)
	require.NoError(t, c.Err())
	d, ok := c.Deadline()
	require.True(t, ok)
	require.Equal(t, deadline, d)
	require.Equal(t, "v", c.Value(key{}))
	select {
	case <-c.Done():
		t.Fatal("done before the deadline")
	default:
	}
	require.Equal(t, "v", c.Value(key{}), "values survive the real context")
	c.finish()
	<-c.Done()
	require.ErrorIs(t, c.Err(), context.Canceled)
}

func TestProcCtxDeadlineWithoutDone(t *testing.T) {
	var c procCtx
	c.start(context.Background(), time.Now().Add(20*time.Millisecond))
	require.NoError(t, c.Err())
	time.Sleep(30 * time.Millisecond)
	require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	require.True(t, c.timedOut(time.Now()))
	<-c.Done() // created after the deadline: closed at once
	require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	require.ErrorIs(t, context.Cause(&c), context.DeadlineExceeded)
}

func TestProcCtxDeadlineWithDone(t *testing.T) {
	var c procCtx
	c.start(context.Background(), time.Now().Add(20*time.Millisecond))
	done := c.Done()
	child, cancel := context.WithCancel(&c)
	defer cancel()
	after := make(chan struct{})
	stop := context.AfterFunc(&c, func() { close(after) })
	defer stop()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("not cancelled at the deadline")
	}
	<-child.Done()
	<-after
	require.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	require.ErrorIs(t, context.Cause(&c), context.DeadlineExceeded)
	require.ErrorIs(t, child.Err(), context.DeadlineExceeded, "children inherit the error, as with the standard library")
}

func TestProcCtxParentCancelled(t *testing.T) {
	parent, cancel := context.WithCancelCause(context.Background())
	var c procCtx
	c.start(parent, time.Now().Add(time.Hour))
	boom := errors.New("boom")
	cancel(boom)
	require.ErrorIs(t, c.Err(), context.Canceled)
	var d procCtx
	d.start(parent, time.Now().Add(time.Hour))
	<-d.Done()
	require.ErrorIs(t, context.Cause(&d), boom)
	require.False(t, d.timedOut(time.Now()))
}

func TestProcCtxParentDeadlineEarlier(t *testing.T) {
	parent, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	var c procCtx
	c.start(parent, time.Now().Add(time.Hour))
	pd, _ := parent.Deadline()
	d, _ := c.Deadline()
	require.Equal(t, pd, d)
	<-parent.Done()
	require.True(t, c.timedOut(time.Now()))
}

func TestProcCtxFinishedBeforeDone(t *testing.T) {
	var c procCtx
	c.start(context.Background(), time.Now().Add(time.Hour))
	c.finish()
	require.ErrorIs(t, c.Err(), context.Canceled)
	<-c.Done()
	require.ErrorIs(t, c.Err(), context.Canceled)
}

// TestProcCtxCauseWithoutDone: context.Cause reports why the context is done even when the
// processor never asked for Done.
func TestProcCtxCauseWithoutDone(t *testing.T) {
	var c procCtx
	c.start(context.Background(), time.Now().Add(-time.Millisecond))
	require.ErrorIs(t, context.Cause(&c), context.DeadlineExceeded)

	var f procCtx
	f.start(context.Background(), time.Now().Add(time.Hour))
	require.NoError(t, context.Cause(&f))
	f.finish()
	require.ErrorIs(t, context.Cause(&f), context.Canceled)

	parent, cancel := context.WithCancelCause(context.Background())
	var p procCtx
	p.start(parent, time.Now().Add(time.Hour))
	boom := errors.New("boom")
	cancel(boom)
	require.ErrorIs(t, context.Cause(&p), boom)
}
