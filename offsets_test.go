package zkafka

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/zkafka-go/zkafka/internal/commit"
)

// TestCommitDueAfterABurst: a periodic commit is due commitEvery after the last, or
// commitBurstGap after it once commitBurst messages were read since.
func TestCommitDueAfterABurst(t *testing.T) {
	o := &offsetStore{every: commitEvery}
	t0 := time.Unix(1000, 0)
	o.lastCommit.Store(t0.UnixNano())
	require.False(t, o.due(t0.Add(commitBurstGap)), "no burst")
	require.True(t, o.due(t0.Add(commitEvery)))
	o.reads.Store(commitBurst - 1)
	require.False(t, o.due(t0.Add(commitBurstGap)))
	o.reads.Add(1)
	require.False(t, o.due(t0.Add(commitBurstGap-time.Millisecond)), "too soon after the last commit")
	require.True(t, o.due(t0.Add(commitBurstGap)))
}

// TestCommitDueSoonAfterAHoldEnds: the commit that ends a hold (or a fence) makes the next
// one due after commitBurstGap: the messages held back start at once and finish in a burst,
// though they were read long before.
func TestCommitDueSoonAfterAHoldEnds(t *testing.T) {
	tracker := commit.NewTracker()
	p := tracker.Get("t", 0)
	seq, _ := p.Read(0, commit.Record{})
	p.Finish(seq)
	o := newOffsetStore(newMemConsumer(1), tracker, NoopLogger{}, newFailureLog(NoopLogger{}), "g", commitEvery, time.Minute)
	now := time.Now()
	o.fence.sending(now.Add(-time.Second))
	o.fence.check(now)
	require.True(t, o.fence.isUp(), "held: commits fell behind")
	o.flush(now)
	require.False(t, o.fence.isUp(), "the accepted commit ends the hold")
	require.True(t, o.due(now.Add(commitBurstGap)), "and the next commit is due after commitBurstGap")

	o.flush(now.Add(commitBurstGap))
	require.False(t, o.due(now.Add(2*commitBurstGap)), "not after an ordinary commit")
}
