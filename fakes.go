package zkafka

// Test seams for users of the library, as zkafka v2 has them: FakeMessage and GetMsgFromFake
// build the Message a processor would get, and FakeClient is a ClientProvider over a Reader
// and Writer of the test's choice. Generated mocks are in mocks/ (mocks.go says how).

import (
	"context"
	"time"

	"github.com/zillow/zfmt"
	"github.com/zkafka-go/zkafka/internal/format"
)

// FakeMessage describes a Message for tests of processors; turn it into one with
// GetMsgFromFake.
type FakeMessage struct {
	// Key of the record; nil means a record without a key.
	Key *string
	// Value is the raw payload, used when ValueData is nil.
	Value []byte
	// ValueData, when not nil, is encoded with Fmt to become the payload (Value is then
	// ignored, as in zkafka v2).
	ValueData any
	// Fmt is the formatter Decode uses, and the one ValueData is encoded with (default: the
	// json formatter), for example &zfmt.JSONFormatter{}.
	Fmt zfmt.Formatter
	// Headers of the record.
	Headers map[string][]byte
	// Offset, Partition, Topic, GroupID and TimeStamp are copied to the Message.
	Offset    int64
	Partition int32
	Topic     string
	GroupID   string
	// TimeStamp of the record (default time.Now() when zero).
	TimeStamp time.Time
	// DoneFunc is called by the Message's Done (default does nothing).
	DoneFunc func(ctx context.Context)
}

// GetMsgFromFake builds the Message a processor would receive for input; nil for nil input.
// A ValueData the formatter cannot encode leaves the Message without a value; Decode then
// reports the problem.
func GetMsgFromFake(input *FakeMessage) *Message {
	if input == nil {
		return nil
	}
	f, _ := format.New(JSONFmt, 0, format.Registry{}) // the json formatter needs no configuration
	if input.Fmt != nil {
		f = format.Guard("FakeMessage.Fmt", input.Fmt)
	}
	value := input.Value
	if input.ValueData != nil { // as in zkafka v2, ValueData wins over Value
		b, err := f.Encode(input.Topic, input.ValueData)
		if err != nil {
			b = nil
		}
		value = b
	}
	ts := input.TimeStamp
	if ts.IsZero() {
		ts = time.Now()
	}
	m := &Message{
		Headers:   input.Headers,
		Offset:    input.Offset,
		Partition: input.Partition,
		Topic:     input.Topic,
		GroupID:   input.GroupID,
		TimeStamp: ts,
		isKeyNil:  input.Key == nil,
		value:     value,
		fmt:       f,
		doneFunc:  input.DoneFunc,
	}
	if input.Key != nil {
		m.Key = *input.Key
	}
	return m
}

// GetFakeMessage builds a Message with key, value encoded with f (json when f is nil), and a
// Done that calls doneFunc (when not nil). It is zkafka v2's older helper; GetMsgFromFake
// sets every field.
func GetFakeMessage(key string, value any, f zfmt.Formatter, doneFunc func()) *Message {
	var done func(context.Context)
	if doneFunc != nil {
		done = func(context.Context) { doneFunc() }
	}
	return GetMsgFromFake(&FakeMessage{Key: &key, ValueData: value, Fmt: f, DoneFunc: done})
}

// FakeClient is a ClientProvider that hands out the Reader and Writer it holds, for tests
// of code that takes a ClientProvider.
type FakeClient struct {
	// R is returned by every Reader call.
	R Reader
	// W is returned by every Writer call.
	W Writer
}

var _ ClientProvider = FakeClient{}

// Reader returns f.R.
func (f FakeClient) Reader(context.Context, ConsumerTopicConfig, ...ReaderOption) (Reader, error) {
	return f.R, nil
}

// Writer returns f.W.
func (f FakeClient) Writer(context.Context, ProducerTopicConfig, ...WriterOption) (Writer, error) {
	return f.W, nil
}

// Close does nothing.
func (f FakeClient) Close() error { return nil }
