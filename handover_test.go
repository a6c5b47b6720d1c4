package zkafka

import (
	"context"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/zkafka-go/zkafka/internal/commit"
)

// readN reads n messages through a new reader of group, leaving Done to the caller.
func readN(t *testing.T, e *testEnv, client *Client, group, topic string, n int) (*KReader, []*Message) {
	t.Helper()
	ctx := context.Background()
	r, err := client.Reader(ctx, ConsumerTopicConfig{ClientID: uniqueTestName(t, "r"), GroupID: group, Topic: topic})
	require.NoError(t, err)
	var msgs []*Message
	for len(msgs) < n {
		m, err := r.Read(ctx)
		require.NoError(t, err)
		if m != nil {
			msgs = append(msgs, m)
		}
	}
	return r.(*KReader), msgs
}

// firstUnfinished is the record of the oldest unfinished message r read from partition 0 of
// topic, as a commit's metadata names it.
func firstUnfinished(t *testing.T, r *KReader, topic string) commit.Record {
	t.Helper()
	c, ok := r.tracker.Lookup(topic, 0).Snapshot(true, commit.MetadataMaxBytes)
	require.True(t, ok)
	md, err := commit.Decode(c.Metadata)
	require.NoError(t, err)
	return commit.Record{Stamp: md.Stamp, Epoch: md.Epoch}
}

func offsetsOf(msgs []*Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Offset
	}
	return out
}

// finishedAboveAHole has a reader of a new group read offsets 0–5 of a new topic, finish 1, 2
// and 4, and close: the commit is at 0, with 1, 2 and 4 finished in its metadata.
func finishedAboveAHole(t *testing.T, e *testEnv) (client *Client, group, topic string) {
	t.Helper()
	topic = e.newTopic(t, 1)
	e.produce(t, topic, keyed(6, 1))
	group = uniqueTestName(t, "g")
	client = e.client(t)
	r1, msgs := readN(t, e, client, group, topic, 6)
	for _, i := range []int{1, 2, 4} {
		msgs[i].Done()
	}
	require.NoError(t, r1.Close())
	require.Equal(t, map[int32]int64{0: 0}, e.committed(t, group, topic))
	return client, group, topic
}

// TestG16NextOwnerSkipsWhatTheLastOneFinished: a reader finishes offsets 1, 2 and 4 of 0–5
// and closes; the group's next reader gets 0, 3 and 5 only, and counts the three it skipped.
func TestG16NextOwnerSkipsWhatTheLastOneFinished(t *testing.T) {
	e := newEnv(t)
	client, group, topic := finishedAboveAHole(t, e)

	r2, again := readN(t, e, client, group, topic, 3)
	require.Equal(t, []int64{0, 3, 5}, offsetsOf(again))
	require.Equal(t, int64(3), r2.offsets.counts.Load().alreadyFinished.Load())
	for _, m := range again {
		m.Done()
	}
	require.NoError(t, r2.commit())
	require.Equal(t, map[int32]int64{0: 6}, e.committed(t, group, topic), "skipped messages move the commit too")
	require.NoError(t, r2.Close())
}

// TestG16MetadataNotOursIsIgnored: commit metadata written by another library, or by this one
// about another log (a record other than the committed one at the committed offset: a topic
// deleted and created again), skips nothing and is counted.
func TestG16MetadataNotOursIsIgnored(t *testing.T) {
	for _, tt := range []struct {
		name string
		ours bool
		md   func(first commit.Record) string
	}{
		{name: "another library's", md: func(commit.Record) string { return `{"parallel-consumer":"xyz"}` }},
		{name: "another log's", md: func(first commit.Record) string {
			md, _ := (&commit.Completions{Base: 0, Stamp: first.Stamp - 1000, Epoch: first.Epoch, Read: 3, Runs: []uint64{1, 3}}).Encode(commit.MetadataMaxBytes)
			return md
		}},
		{name: "this log's, for comparison", ours: true, md: func(first commit.Record) string {
			md, _ := (&commit.Completions{Base: 0, Stamp: first.Stamp, Epoch: first.Epoch, Read: 3, Runs: []uint64{1, 3}}).Encode(commit.MetadataMaxBytes)
			return md
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			topic := e.newTopic(t, 1)
			e.produce(t, topic, keyed(4, 1))
			group := uniqueTestName(t, "g")
			client := e.client(t)
			r1, _ := readN(t, e, client, group, topic, 1)
			first := firstUnfinished(t, r1, topic)
			require.NoError(t, r1.Close())
			commitWithMetadata(t, e.addr, group, topic, 0, tt.md(first))

			n := 4
			if tt.ours {
				n = 1
			}
			r2, got := readN(t, e, client, group, topic, n)
			counts := r2.offsets.counts.Load()
			if tt.ours {
				require.Equal(t, []int64{0}, offsetsOf(got))
				m, err := r2.Read(context.Background())
				require.NoError(t, err)
				require.Nil(t, m, "1, 2 and 3 are skipped")
				require.Equal(t, int64(3), counts.alreadyFinished.Load())
				require.Zero(t, counts.ignored.Load())
			} else {
				require.Equal(t, []int64{0, 1, 2, 3}, offsetsOf(got), "nothing skipped")
				require.Zero(t, counts.alreadyFinished.Load())
				require.Equal(t, int64(1), counts.ignored.Load())
			}
			require.NoError(t, r2.Close())
		})
	}
}

// commitWithMetadata commits offset with md for partition 0 of topic as group, which has no
// member: a plain consumer that does not join.
func commitWithMetadata(t *testing.T, addr, group, topic string, offset int64, md string) {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": addr, "group.id": group})
	require.NoError(t, err)
	defer func() { require.NoError(t, c.Close()) }()
	_, err = c.CommitOffsets([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.Offset(offset), Metadata: &md}})
	require.NoError(t, err)
}

// TestG16NextOwnerSkipsWhenTheFirstCommittedReadFails: the next owner's read of the committed
// offsets at assignment is refused (NOT_COORDINATOR: a coordinator that moved, as the chaos
// runs do), so it learns what the last owner finished when the partition's first message
// arrives, and still skips it.
func TestG16NextOwnerSkipsWhenTheFirstCommittedReadFails(t *testing.T) {
	e := newEmbeddedEnv(t)
	client, group, topic := finishedAboveAHole(t, e)

	refused := e.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetFetch}, Group: group, Err: kerr.NotCoordinator})
	r2, again := readN(t, e, client, group, topic, 3)
	require.Equal(t, 1, refused.Hits(), "the fault answered the first read of the committed offsets")
	require.Equal(t, []int64{0, 3, 5}, offsetsOf(again))
	require.Equal(t, int64(3), r2.offsets.counts.Load().alreadyFinished.Load())
	require.NoError(t, r2.Close())
}

// TestCommitAtCloseIsTriedAgainWhileTheCoordinatorLoads: the final commit is refused
// COORDINATOR_LOAD_IN_PROGRESS more often than librdkafka tries it; the reader tries again
// and the commit lands, with what it finished above the committed offset.
func TestCommitAtCloseIsTriedAgainWhileTheCoordinatorLoads(t *testing.T) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, keyed(5, 1))
	group := uniqueTestName(t, "g")
	client := e.client(t)

	r1, msgs := readN(t, e, client, group, topic, 4)
	for _, i := range []int{0, 1, 3} {
		msgs[i].Done()
	}
	const refusals = 6
	loading := e.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: group, Err: kerr.CoordinatorLoadInProgress, Count: refusals})
	require.NoError(t, r1.Close())
	require.Equal(t, refusals, loading.Hits())
	require.Equal(t, map[int32]int64{0: 2}, e.committed(t, group, topic))

	r2, again := readN(t, e, client, group, topic, 2)
	require.Equal(t, []int64{2, 4}, offsetsOf(again), "offset 3 was finished: the metadata says so")
	require.NoError(t, r2.Close())
}
