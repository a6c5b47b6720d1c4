package zkafka

import (
	"context"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Reader reads messages one at a time. Works read through it; users may too.
type Reader interface {
	// Read returns the next message, or nil and no error when none arrived within the read
	// timeout. Call Done on every message returned, once it is finished.
	Read(ctx context.Context) (*Message, error)
	// Close commits what is finished and leaves the consumer group.
	Close() error
}

// Assignment is one partition currently assigned to a reader.
type Assignment struct {
	Partition int32
	Topic     string
}

// KafkaConsumer is the part of confluent-kafka-go's *kafka.Consumer the library uses. It
// exists so tests can substitute the consumer (WithConsumerProvider).
type KafkaConsumer interface {
	SubscribeTopics(topics []string, rebalanceCb kafka.RebalanceCb) error
	Poll(timeoutMs int) kafka.Event
	Commit() ([]kafka.TopicPartition, error)
	CommitOffsets(offsets []kafka.TopicPartition) ([]kafka.TopicPartition, error)
	StoreOffsets(offsets []kafka.TopicPartition) ([]kafka.TopicPartition, error)
	Assign(partitions []kafka.TopicPartition) error
	Unassign() error
	IncrementalAssign(partitions []kafka.TopicPartition) error
	IncrementalUnassign(partitions []kafka.TopicPartition) error
	GetRebalanceProtocol() string
	Assignment() ([]kafka.TopicPartition, error)
	AssignmentLost() bool
	Pause(partitions []kafka.TopicPartition) error
	Resume(partitions []kafka.TopicPartition) error
	Seek(partition kafka.TopicPartition, ignoredTimeoutMs int) error
	Close() error
}

// ReaderOption customises a KReader created by Client.Reader.
type ReaderOption func(*KReader)

// RFormatterOption sets the Formatter a reader decodes with; use it with FormatterType
// CustomFmt (it takes precedence over the configured formatter).
func RFormatterOption(f Formatter) ReaderOption {
	return func(r *KReader) {
		if f != nil {
			r.fmt = formatterAdapter{f}
		}
	}
}

// formatterAdapter lets a user Formatter serve as a kFormatter.
type formatterAdapter struct{ f Formatter }

func (a formatterAdapter) marshall(req marshReq) ([]byte, error) { return a.f.Marshall(req.subject) }
func (a formatterAdapter) unmarshal(req unmarshReq) error        { return a.f.Unmarshal(req.data, req.target) }

// readerArgs is what Client hands to newReader.
type readerArgs struct {
	conf        Config
	tc          ConsumerTopicConfig
	groupPrefix string
	fmt         kFormatter
	logger      Logger
	hooks       LifecycleHooks
	provider    func(map[string]any) (KafkaConsumer, error)
	opts        []ReaderOption
}

// KReader is the Reader over a confluent-kafka-go consumer. Offsets are stored only up to the
// first message not yet Done, so Done may be called in any order.
type KReader struct {
	consumer    KafkaConsumer
	tc          ConsumerTopicConfig
	groupID     string
	fmt         kFormatter
	logger      Logger
	hooks       LifecycleHooks
	readTimeout time.Duration
}

// newReader builds a KReader: validates nothing (Client did), creates and subscribes the
// consumer. Implemented in the work-engine change.
func newReader(args readerArgs) (*KReader, error) {
	return nil, errConfig("reader not implemented yet")
}

// Read returns the next message (see Reader).
func (r *KReader) Read(ctx context.Context) (*Message, error) { return nil, nil }

// Close commits what is finished and closes the consumer (see Reader).
func (r *KReader) Close() error { return nil }

// Assignments returns the partitions currently assigned to this reader.
func (r *KReader) Assignments(ctx context.Context) ([]Assignment, error) { return nil, nil }
