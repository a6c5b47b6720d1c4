package zkafka

// Defaults of ConsumerTopicConfig (SPEC S3).
const (
	// DefaultReadTimeoutMillis is how long one poll of the consumer waits for a message.
	DefaultReadTimeoutMillis = 1000
	// DefaultProcessTimeoutMillis bounds one call of a processor.
	DefaultProcessTimeoutMillis = 60000
	// DefaultSessionTimeoutMillis is the consumer group session timeout (session.timeout.ms).
	DefaultSessionTimeoutMillis = 61000
	// DefaultMaxPollIntervalMillis is max.poll.interval.ms.
	DefaultMaxPollIntervalMillis = 61000
)

// Config is what every reader and writer of a Client shares: where the brokers are and how to
// authenticate to them.
type Config struct {
	// BootstrapServers are the broker addresses ("host:port"). Required unless every topic
	// config sets its own.
	BootstrapServers []string
	// SaslUsername and SaslPassword, when both set, turn on SASL_SSL with SCRAM-SHA-256 (the
	// mechanism can be changed with AdditionalProps "sasl.mechanism"). Never logged.
	SaslUsername *string
	SaslPassword *string
	// CAFile is a PEM file of CA certificates to verify the brokers with (ssl.ca.location).
	// Setting it, or KeyFile/CertFile, turns on TLS (security.protocol SSL, or SASL_SSL with SASL).
	CAFile string
	// KeyFile is the client's PEM private key (ssl.key.location), for mutual TLS.
	KeyFile string
	// CertFile is the client's PEM certificate (ssl.certificate.location), for mutual TLS.
	CertFile string
}

// SchemaRegistryConfig configures the schema registry formatters and the avro formatter.
type SchemaRegistryConfig struct {
	// URL of the schema registry; "mock://name" gives an in-memory registry shared by name.
	URL string
	// Serialization configures writes.
	Serialization SerializationConfig
	// Deserialization configures reads.
	Deserialization DeserializationConfig
	// SubjectName overrides the subject (default: the topic name strategy, "<topic>-value").
	SubjectName string
}

// SerializationConfig configures how a writer encodes with a schema.
type SerializationConfig struct {
	// AutoRegisterSchemas registers Schema with the registry on first write (default false).
	AutoRegisterSchemas bool
	// Schema is the writer schema (avro JSON, .proto text or JSON schema).
	Schema string
}

// DeserializationConfig configures how a reader decodes with a schema.
type DeserializationConfig struct {
	// Schema is the reader schema; data written with a compatible schema is resolved to it.
	Schema string
}

// ConsumerTopicConfig configures a Reader or a Work.
type ConsumerTopicConfig struct {
	// ClientID names the consumer (client.id) and keys the Client's reader cache. Required.
	ClientID string
	// GroupID is the consumer group (group.id), prefixed by KafkaGroupPrefixOption. Required.
	GroupID string
	// Topic to consume. Topic and Topics are merged; at least one topic is required.
	Topic string
	// Topics to consume, in addition to Topic.
	Topics []string
	// BootstrapServers overrides Config.BootstrapServers for this consumer.
	BootstrapServers []string
	// AutoCommitIntervalMs is auto.commit.interval.ms (librdkafka default 5000).
	AutoCommitIntervalMs *int
	// AdditionalProps are extra librdkafka keys, applied last. They cannot turn
	// enable.auto.offset.store back on: the library stores offsets itself, only for messages
	// that are finished, and overrides that key.
	AdditionalProps map[string]any
	// Formatter decodes payloads (default JSONFmt).
	Formatter FormatterType
	// SchemaRegistry configures the schema registry and avro formatters.
	SchemaRegistry SchemaRegistryConfig
	// SchemaID is kept for zkafka compatibility; schema registry payloads carry their own id.
	SchemaID int
	// Transaction reads only committed records (isolation.level read_committed); default
	// read_uncommitted.
	Transaction bool
	// ReadTimeoutMillis bounds one poll (default 1000).
	ReadTimeoutMillis *int
	// ProcessTimeoutMillis bounds one processor call (default 60000).
	ProcessTimeoutMillis *int
	// SessionTimeoutMillis is session.timeout.ms (default 61000).
	SessionTimeoutMillis *int
	// MaxPollIntervalMillis is max.poll.interval.ms (default 61000).
	MaxPollIntervalMillis *int
	// ProcessDelayMillis holds each message until its timestamp + this delay (default none).
	ProcessDelayMillis *int
	// SaslUsername and SaslPassword override Config's for this consumer. Never logged.
	SaslUsername *string
	SaslPassword *string
	// DeadLetterTopicConfig, when set, is where a Work writes messages that failed.
	DeadLetterTopicConfig *ProducerTopicConfig
}

// ProducerTopicConfig configures a Writer (and a dead letter topic).
type ProducerTopicConfig struct {
	// ClientID names the producer (client.id); with Topic it keys the Client's writer cache.
	// Required.
	ClientID string
	// Topic to write to. Required.
	Topic string
	// BootstrapServers overrides Config.BootstrapServers for this producer.
	BootstrapServers []string
	// DeliveryTimeoutMs is delivery.timeout.ms (librdkafka default 300000).
	DeliveryTimeoutMs *int
	// AdditionalProps are extra librdkafka keys, applied last.
	AdditionalProps map[string]any
	// Formatter encodes values (default JSONFmt).
	Formatter FormatterType
	// SchemaRegistry configures the schema registry and avro formatters.
	SchemaRegistry SchemaRegistryConfig
	// SchemaID is kept for zkafka compatibility.
	SchemaID int
	// Transaction turns on a transactional producer (transactional.id = ClientID).
	Transaction bool
	// RequestRequiredAcks is acks (librdkafka default "all").
	RequestRequiredAcks *string
	// EnableIdempotence is enable.idempotence (default true).
	EnableIdempotence *bool
	// LingerMillis is linger.ms (default 0).
	LingerMillis int
	// NagleDisable is socket.nagle.disable (default true).
	NagleDisable *bool
	// SaslUsername and SaslPassword override Config's for this producer. Never logged.
	SaslUsername *string
	SaslPassword *string
}
