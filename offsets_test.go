package zkafka

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
