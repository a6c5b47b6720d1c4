package zkafka

import (
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"
	"github.com/zkafka-go/zkafka/internal/commit"
)

// TestCommitDueAfterABurst: a periodic commit is due commitEvery after the last, or
// commitBurstGap after it once commitBurst messages finished since (read, with nothing more
// in flight).
func TestCommitDueAfterABurst(t *testing.T) {
	o := &offsetStore{every: commitEvery}
	t0 := time.Unix(1000, 0)
	o.lastCommit.Store(t0.UnixNano())
	require.False(t, o.due(t0.Add(commitBurstGap), 0), "no burst")
	require.True(t, o.due(t0.Add(commitEvery), 0))
	o.reads.Store(commitBurst - 1)
	require.False(t, o.due(t0.Add(commitBurstGap), 0))
	o.reads.Add(1)
	require.False(t, o.due(t0.Add(commitBurstGap-time.Millisecond), 0), "too soon after the last commit")
	require.True(t, o.due(t0.Add(commitBurstGap), 0))
	require.False(t, o.due(t0.Add(commitBurstGap), commitBurst), "read, but still in flight")
}

// TestCommitDueSoonerInASurge: once commitSurge messages finished since the last commit, the
// next one is due commitSurgeGap after it, not commitBurstGap.
func TestCommitDueSoonerInASurge(t *testing.T) {
	o := &offsetStore{every: commitEvery}
	t0 := time.Unix(1000, 0)
	o.lastCommit.Store(t0.UnixNano())
	o.reads.Store(commitSurge - 1)
	require.False(t, o.due(t0.Add(commitSurgeGap), 0), "a burst, not a surge")
	require.True(t, o.due(t0.Add(commitBurstGap), 0), "a burst")
	o.reads.Add(1)
	require.False(t, o.due(t0.Add(commitSurgeGap-time.Millisecond), 0), "too soon after the last commit")
	require.True(t, o.due(t0.Add(commitSurgeGap), 0))
	require.False(t, o.due(t0.Add(commitSurgeGap), commitSurge-commitBurst+1), "read, but still in flight")
}

// TestCommitDueAfterTheBoundDrains: with the reader paused at a full in-flight bound, nothing
// is read, but the processors finish what is in flight: once commitBurst messages finished,
// the next commit is due commitBurstGap after the last.
func TestCommitDueAfterTheBoundDrains(t *testing.T) {
	o := newOffsetStore(newMemConsumer(1), commit.NewTracker(), NoopLogger{}, newFailureLog(NoopLogger{}), "g", commitEvery, time.Minute)
	t0 := time.Now()
	o.flush(t0, o.mark(4000)) // a commit while 4,000 messages were in flight
	require.Equal(t, t0.UnixNano(), o.lastCommit.Load())
	require.False(t, o.due(t0.Add(commitBurstGap), 4000-commitBurst+1), "one short of a burst")
	require.True(t, o.due(t0.Add(commitBurstGap), 4000-commitBurst), "a burst finished")
	require.False(t, o.due(t0.Add(commitBurstGap-time.Millisecond), 4000-commitBurst), "too soon after the last commit")
	require.True(t, o.due(t0.Add(commitSurgeGap), 0), "all 4,000 finished: a surge")
	require.False(t, o.due(t0.Add(commitSurgeGap-time.Millisecond), 0), "too soon after the last commit")
}

// refusingCommitter refuses every commit as the group coordinator does while it loads.
type refusingCommitter struct{ *memConsumer }

func (refusingCommitter) CommitOffsets([]kafka.TopicPartition) ([]kafka.TopicPartition, error) {
	return nil, kafka.NewError(kafka.ErrCoordinatorLoadInProgress, "loading", false)
}

// TestCommitDueSoonAfterAFailedCommitOfABurst: a periodic commit that fails leaves the burst
// it was to carry to the next one, due commitBurstGap later, not commitEvery.
func TestCommitDueSoonAfterAFailedCommitOfABurst(t *testing.T) {
	tracker := commit.NewTracker()
	p := tracker.Get("t", 0)
	for i := range int64(commitBurst) {
		seq, _ := p.Read(i, commit.Record{})
		p.Finish(seq)
	}
	o := newOffsetStore(refusingCommitter{newMemConsumer(1)}, tracker, NoopLogger{}, newFailureLog(NoopLogger{}), "g", commitEvery, time.Minute)
	o.reads.Store(commitBurst)
	now := time.Now()
	o.flush(now, o.mark(0))
	require.Equal(t, now.UnixNano(), o.lastCommit.Load(), "the commit was tried")
	require.False(t, o.due(now.Add(commitBurstGap-time.Millisecond), 0), "too soon after the last try")
	require.True(t, o.due(now.Add(commitBurstGap), 0), "the burst is still to commit")
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
	o.flush(now, o.mark(0))
	require.False(t, o.fence.isUp(), "the accepted commit ends the hold")
	require.True(t, o.due(now.Add(commitBurstGap), 0), "and the next commit is due after commitBurstGap")

	o.flush(now.Add(commitBurstGap), o.mark(0))
	require.False(t, o.due(now.Add(2*commitBurstGap), 0), "not after an ordinary commit")
}

// expelledConsumer is a consumer whose librdkafka holds no membership of the group: no member
// id, generation -1, as after the group expired it.
type expelledConsumer struct{ *memConsumer }

func (expelledConsumer) GetConsumerGroupMetadata() (*kafka.ConsumerGroupMetadata, error) {
	return kafka.NewTestConsumerGroupMetadata("g")
}

// TestNoCommitOutsideTheGroup: a consumer that holds no membership of its group commits
// nothing (librdkafka would send a commit outside the group, which the broker may take over
// the later owner's), and keeps what it had to commit for a commit made once it is a member
// again.
func TestNoCommitOutsideTheGroup(t *testing.T) {
	c := expelledConsumer{newMemConsumer(1)}
	id, generation, known := classicMembership(c, ConsumerTopicConfig{})
	require.True(t, known, "librdkafka's metadata is read")
	require.Empty(t, id, "no member id")
	require.EqualValues(t, -1, generation)
	_, _, known = classicMembership(c, ConsumerTopicConfig{GroupProtocol: GroupProtocolConsumer})
	require.False(t, known, "not asked under the consumer protocol: its member id outlives the membership")

	tracker := commit.NewTracker()
	p := tracker.Get("t", 0)
	seq, _ := p.Read(0, commit.Record{})
	p.Finish(seq)
	o := newOffsetStore(c, tracker, NoopLogger{}, newFailureLog(NoopLogger{}), "g", commitEvery, time.Minute)
	expelled := true
	o.left = func() bool { return expelled }
	require.ErrorIs(t, o.commitFinished(nil, false), errNotMember)
	require.Zero(t, c.commits.Load(), "nothing sent")

	expelled = false
	require.NoError(t, o.commitFinished(nil, false))
	require.EqualValues(t, 1, c.commits.Load(), "the partition is committed once the consumer is a member again")
}
