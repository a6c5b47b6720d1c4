package zkafka

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/zillow/zfmt"
)

func TestGetMsgFromFake(t *testing.T) {
	require.Nil(t, GetMsgFromFake(nil))

	type payload struct{ N int }
	var done bool
	ts := time.Unix(100, 0)
	m := GetMsgFromFake(&FakeMessage{
		Key: ptrOf("k"), ValueData: payload{N: 3}, Headers: map[string][]byte{"h": []byte("v")},
		Offset: 5, Partition: 2, Topic: "t", GroupID: "g", TimeStamp: ts,
		DoneFunc: func(context.Context) { done = true },
	})
	require.Equal(t, "k", m.Key)
	require.False(t, m.IsKeyNil())
	var p payload
	require.NoError(t, m.Decode(&p))
	require.Equal(t, 3, p.N)
	require.JSONEq(t, `{"N":3}`, string(m.Value()))
	require.Equal(t, map[string][]byte{"h": []byte("v")}, m.Headers)
	require.Equal(t, int64(5), m.Offset)
	require.Equal(t, int32(2), m.Partition)
	require.Equal(t, "t", m.Topic)
	require.Equal(t, "g", m.GroupID)
	require.Equal(t, ts, m.TimeStamp)
	m.Done()
	require.True(t, done)

	raw := GetMsgFromFake(&FakeMessage{Value: []byte("hello"), Fmt: &zfmt.StringFormatter{}})
	require.True(t, raw.IsKeyNil())
	require.Equal(t, "", raw.Key)
	var sb strings.Builder // zfmt's string formatter decodes into an io.Writer
	require.NoError(t, raw.Decode(&sb))
	require.Equal(t, "hello", sb.String())
	var s string
	require.False(t, raw.TimeStamp.IsZero())
	raw.Done() // no DoneFunc: nothing happens

	bad := GetMsgFromFake(&FakeMessage{ValueData: func() {}})
	require.Nil(t, bad.Value())
	require.Error(t, bad.Decode(&s))
}

func TestFakeClient(t *testing.T) {
	w := &KWriter{}
	var c ClientProvider = FakeClient{W: w}
	got, err := c.Writer(t.Context(), ProducerTopicConfig{})
	require.NoError(t, err)
	require.Same(t, w, got)
	r, err := c.Reader(t.Context(), ConsumerTopicConfig{})
	require.NoError(t, err)
	require.Nil(t, r)
	require.NoError(t, c.Close())
}
