package zkafka

// Mocks of the public interfaces, for users' tests and ours. Regenerate with `go generate`
// (or `make gen`).

//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -destination=mocks/mock_client.go -package=mock_zkafka github.com/zkafka-go/zkafka ClientProvider
//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -destination=mocks/mock_reader.go -package=mock_zkafka github.com/zkafka-go/zkafka Reader
//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -destination=mocks/mock_writer.go -package=mock_zkafka github.com/zkafka-go/zkafka Writer
//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -destination=mocks/mock_logger.go -package=mock_zkafka github.com/zkafka-go/zkafka Logger
//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -destination=mocks/confluent/kafka_consumer.go -package=mock_confluent github.com/zkafka-go/zkafka KafkaConsumer
//go:generate go run go.uber.org/mock/mockgen@v0.6.0 -destination=mocks/confluent/kafka_producer.go -package=mock_confluent github.com/zkafka-go/zkafka KafkaProducer
