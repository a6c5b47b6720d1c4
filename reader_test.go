package zkafka

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReaderDoneInAnyOrderCommitsTheFinishedPrefix reads three messages and finishes them out
// of order: the committed offset only moves past a message once it and all before it are done.
func TestReaderDoneInAnyOrderCommitsTheFinishedPrefix(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	e.produce(t, topic, []rec{{Value: []byte(`1`)}, {Value: []byte(`2`)}, {Value: []byte(`3`)}})
	group := uniqueTestName(t, "g")
	client := e.client(t)
	ctx := context.Background()
	r, err := client.Reader(ctx, ConsumerTopicConfig{ClientID: uniqueTestName(t, "r"), GroupID: group, Topic: topic})
	require.NoError(t, err)
	var msgs []*Message
	for len(msgs) < 3 {
		m, err := r.Read(ctx)
		require.NoError(t, err)
		if m != nil {
			msgs = append(msgs, m)
		}
	}
	kr := r.(*KReader)
	msgs[2].Done()
	msgs[1].Done()
	require.NoError(t, kr.commit())
	require.Empty(t, e.committed(t, group, topic), "offset 0 is not done: nothing may be committed")
	msgs[0].Done()
	require.NoError(t, kr.commit())
	require.Equal(t, map[int32]int64{0: 3}, e.committed(t, group, topic))
	assignments, err := kr.Assignments(ctx)
	require.NoError(t, err)
	require.Equal(t, []Assignment{{Topic: topic, Partition: 0}}, assignments)
	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "Close twice is fine")
}
