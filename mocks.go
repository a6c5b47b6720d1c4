package zkafka

import "context"

// Mocks of the public interfaces, for users' tests and ours. Regenerate with `go generate`
// (or `make gen`).

//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -destination=mocks/mock_client.go -package=mock_zkafka github.com/zkafka-go/zkafka ClientProvider
//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -source=mocks.go -destination=mocks/mock_reader.go -package=mock_zkafka -mock_names=readerWithAssignments=MockReader
//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -destination=mocks/mock_writer.go -package=mock_zkafka github.com/zkafka-go/zkafka Writer
//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -destination=mocks/mock_logger.go -package=mock_zkafka github.com/zkafka-go/zkafka Logger
//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -destination=mocks/confluent/kafka_consumer.go -package=mock_confluent github.com/zkafka-go/zkafka KafkaConsumer
//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -destination=mocks/confluent/kafka_producer.go -package=mock_confluent github.com/zkafka-go/zkafka KafkaProducer

// readerWithAssignments is what mocks.MockReader mocks: a Reader that also has KReader's
// Assignments, as zkafka v2's MockReader does. It is a Reader, so MockReader serves wherever a
// Reader is wanted.
type readerWithAssignments interface {
	// Read is Reader.Read.
	Read(ctx context.Context) (*Message, error)
	// Close is Reader.Close.
	Close() error
	// Assignments is KReader.Assignments.
	Assignments(ctx context.Context) ([]Assignment, error)
}

var (
	_ readerWithAssignments = (*KReader)(nil)
	_ Reader                = readerWithAssignments(nil)
)
