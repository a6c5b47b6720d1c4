package zkafka

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	mock_confluent "github.com/zkafka-go/zkafka/mocks/confluent"
)

func TestClientWriterCache(t *testing.T) {
	fp := newFakeProducerFactory()
	c := NewClient(Config{BootstrapServers: []string{"b:1"}}, WithProducerProvider(fp.provider))
	ctx := t.Context()

	w1, err := c.Writer(ctx, ProducerTopicConfig{ClientID: "id", Topic: "a"})
	require.NoError(t, err)
	again, err := c.Writer(ctx, ProducerTopicConfig{ClientID: "id", Topic: "a"})
	require.NoError(t, err)
	require.Same(t, w1, again, "same ClientID and topic give the cached writer")

	w2, err := c.Writer(ctx, ProducerTopicConfig{ClientID: "id", Topic: "b"})
	require.NoError(t, err)
	require.NotSame(t, w1, w2, "same ClientID, other topic is another writer")
	require.Len(t, fp.all(), 2)

	_, err = w1.WriteRaw(ctx, nil, []byte("to a"))
	require.NoError(t, err)
	_, err = w2.WriteRaw(ctx, nil, []byte("to b"))
	require.NoError(t, err)
	require.Equal(t, "a", *fp.all()[0].produced[0].TopicPartition.Topic)
	require.Equal(t, "b", *fp.all()[1].produced[0].TopicPartition.Topic)

	w1.Close()
	require.True(t, fp.all()[0].isClosed())
	replaced, err := c.Writer(ctx, ProducerTopicConfig{ClientID: "id", Topic: "a"})
	require.NoError(t, err)
	require.NotSame(t, w1, replaced, "a closed writer is replaced")
	require.Len(t, fp.all(), 3)

	require.NoError(t, c.Close())
	for i, p := range fp.all() {
		require.True(t, p.isClosed(), "producer %d closed by Client.Close", i)
	}
	require.NoError(t, c.Close(), "Close twice is fine")
	_, err = c.Writer(ctx, ProducerTopicConfig{ClientID: "id", Topic: "a"})
	require.ErrorIs(t, err, errClientClosed)
	_, err = c.Reader(ctx, ConsumerTopicConfig{ClientID: "id", GroupID: "g", Topic: "a"})
	require.ErrorIs(t, err, errClientClosed)
}

func TestClientWriterFormatterErrors(t *testing.T) {
	fp := newFakeProducerFactory()
	c := NewClient(Config{BootstrapServers: []string{"b:1"}}, WithProducerProvider(fp.provider))
	defer func() { require.NoError(t, c.Close()) }()

	_, err := c.Writer(t.Context(), ProducerTopicConfig{ClientID: "id", Topic: "a", Formatter: CustomFmt})
	require.EqualError(t, err, "zkafka: formatter custom needs WFormatterOption")
	require.True(t, IsConfigError(err))
	require.Empty(t, fp.all(), "no producer is created for an invalid writer")

	w, err := c.Writer(t.Context(), ProducerTopicConfig{ClientID: "id", Topic: "a", Formatter: CustomFmt},
		WFormatterOption(upperFormatter{}))
	require.NoError(t, err)
	_, err = w.WriteKey(t.Context(), "k", "hello")
	require.NoError(t, err)
	require.Equal(t, []byte("HELLO"), fp.all()[0].produced[0].Value)

	_, err = c.Reader(t.Context(), ConsumerTopicConfig{ClientID: "r", GroupID: "g", Topic: "a", Formatter: CustomFmt})
	require.EqualError(t, err, "zkafka: formatter custom needs RFormatterOption")
}

func TestClientProviderErrorIsReturned(t *testing.T) {
	c := NewClient(Config{BootstrapServers: []string{"b:1"}}, WithProducerProvider(func(map[string]any) (KafkaProducer, error) {
		return nil, errors.New("boom")
	}))
	_, err := c.Writer(t.Context(), ProducerTopicConfig{ClientID: "id", Topic: "a"})
	require.ErrorContains(t, err, "boom")
	require.NoError(t, c.Close())
}

func TestClientReaderCache(t *testing.T) {
	ctrl := gomock.NewController(t)
	var created []*mock_confluent.MockKafkaConsumer
	c := NewClient(Config{BootstrapServers: []string{"b:1"}}, WithConsumerProvider(func(map[string]any) (KafkaConsumer, error) {
		// No SubscribeTopics: a reader subscribes on its first Read, as in zkafka v2.
		m := mock_confluent.NewMockKafkaConsumer(ctrl)
		m.EXPECT().Close().Return(nil)
		created = append(created, m)
		return m, nil
	}))
	tc := ConsumerTopicConfig{ClientID: "id", GroupID: "g", Topic: "a"}
	r1, err := c.Reader(t.Context(), tc)
	require.NoError(t, err)
	r2, err := c.Reader(t.Context(), tc)
	require.NoError(t, err)
	require.Same(t, r1, r2, "readers are cached by ClientID")
	require.Len(t, created, 1)

	require.NoError(t, r1.Close())
	r3, err := c.Reader(t.Context(), tc)
	require.NoError(t, err)
	require.NotSame(t, r1, r3, "a closed cached reader is replaced")
	require.Len(t, created, 2)

	require.NoError(t, c.Close(), "Close closes the open reader")
	require.NoError(t, c.Close(), "Close twice is fine")
	_, err = c.Reader(t.Context(), tc)
	require.ErrorIs(t, err, errClientClosed)
}

// upperFormatter is a custom Formatter for tests.
type upperFormatter struct{}

func (upperFormatter) Marshall(v any) ([]byte, error) {
	s, _ := v.(string)
	out := []byte(s)
	for i, b := range out {
		if b >= 'a' && b <= 'z' {
			out[i] = b - 'a' + 'A'
		}
	}
	return out, nil
}

func (upperFormatter) Unmarshal(b []byte, v any) error {
	*(v.(*string)) = string(b)
	return nil
}
