package zkafka

// What the schema registry formatters (formatter_avro_sr.go, formatter_json_sr.go,
// formatter_proto_sr.go) share: the registry client, subjects, serializer configs and the wire
// format check. The details are below the imports.

import (
	"fmt"
	"strings"
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"
)

// Schema registry plumbing shared by the avro, protobuf and JSON schema registry formatters.
//
// Payloads are in Confluent's wire format: a magic byte 0, the 4-byte big-endian schema id, then
// the encoded value (protobuf adds message indexes). The serializers and deserializers come from
// confluent-kafka-go's serde packages; each formatter creates them lazily per topic, because the
// subject (and so the schema id a writer uses) depends on the topic.

// schemaRegistryClients holds one registry client per URL for the whole process. confluent's
// NewClient returns a fresh, empty in-memory registry for every "mock://" URL it is given;
// sharing clients by URL is what lets a writer and a reader in one process (a test) see the same
// mock registry, and lets readers and writers of one real registry share its caches.
var schemaRegistryClients = struct {
	sync.Mutex
	byURL map[string]schemaregistry.Client
}{byURL: map[string]schemaregistry.Client{}}

// schemaRegistryClient returns the process-wide client for url, creating it on first use.
func schemaRegistryClient(url string) (schemaregistry.Client, error) {
	schemaRegistryClients.Lock()
	defer schemaRegistryClients.Unlock()
	if c, ok := schemaRegistryClients.byURL[url]; ok {
		return c, nil
	}
	c, err := schemaregistry.NewClient(schemaregistry.NewConfig(url))
	if err != nil {
		return nil, errConfig("SchemaRegistry.URL %q is not usable: %v", url, err)
	}
	if strings.HasPrefix(url, "mock://") {
		c = &mockRegistryClient{Client: c}
	}
	schemaRegistryClients.byURL[url] = c
	return c, nil
}

// srBase is what every schema registry formatter shares: the client and the configuration.
type srBase struct {
	name   string
	client schemaregistry.Client
	cfg    SchemaRegistryConfig
}

// newSRBase validates the configuration common to the schema registry formatters.
func newSRBase(ft FormatterType, sr SchemaRegistryConfig) (srBase, error) {
	if strings.TrimSpace(sr.URL) == "" {
		return srBase{}, errConfig("formatter %q needs SchemaRegistry.URL (use \"mock://<name>\" for an in-memory registry in tests)", string(ft))
	}
	c, err := schemaRegistryClient(sr.URL)
	if err != nil {
		return srBase{}, err
	}
	return srBase{name: string(ft), client: c, cfg: sr}, nil
}

// withoutAvroSchema drops an avro schema from the Serialization.Schema of a protobuf or JSON
// registry formatter: zkafka v2 uses that field for avro only (protobuf and JSON schemas come
// from the Go type there), and v2 configurations carry their avro schema in it whatever the
// format. A schema of the formatter's own kind is kept and used.
func withoutAvroSchema(sr SchemaRegistryConfig) SchemaRegistryConfig {
	if s := sr.Serialization.Schema; s != "" {
		if _, err := parseAvroSchema(s); err == nil {
			sr.Serialization.Schema = ""
		}
	}
	return sr
}

// subject is the registry subject of topic's values: SubjectName when set, else the topic name
// strategy "<topic>-value".
func (b srBase) subject(topic string) string {
	if b.cfg.SubjectName != "" {
		return b.cfg.SubjectName
	}
	return topic + "-value"
}

// subjectStrategy is b.subject as a serde.SubjectNameStrategyFunc.
func (b srBase) subjectStrategy(topic string, _ serde.Type, _ schemaregistry.SchemaInfo) (string, error) {
	return b.subject(topic), nil
}

// serializerConfig decides how a serializer for topic finds its schema:
//   - Serialization.Schema set: that schema, registered under the subject first when
//     AutoRegisterSchemas is on, else looked up (it must already be registered);
//   - no schema, AutoRegisterSchemas on: the schema the serde derives from the value's type;
//   - no schema, AutoRegisterSchemas off: the latest version registered under the subject.
func (b srBase) serializerConfig(topic, schemaType string) (serde.SerializerConfig, error) {
	c := *serde.NewSerializerConfig()
	c.AutoRegisterSchemas = b.cfg.Serialization.AutoRegisterSchemas
	if b.cfg.Serialization.Schema == "" {
		c.UseLatestVersion = !c.AutoRegisterSchemas
		return c, nil
	}
	info := schemaregistry.SchemaInfo{Schema: b.cfg.Serialization.Schema, SchemaType: schemaType}
	subject := b.subject(topic)
	var id int
	var err error
	if c.AutoRegisterSchemas {
		id, err = b.client.Register(subject, info, false)
		if err != nil {
			return c, fmt.Errorf("zkafka: %s formatter: registering SchemaRegistry.Serialization.Schema under subject %q: %w", b.name, subject, err)
		}
	} else {
		id, err = b.client.GetID(subject, info, false)
		if err != nil {
			return c, fmt.Errorf("zkafka: %s formatter: failed to get %s schema by id: SchemaRegistry.Serialization.Schema "+
				"is not registered under subject %q (register it, or set SchemaRegistry.Serialization.AutoRegisterSchemas): %w",
				b.name, schemaKind(schemaType), subject, err)
		}
	}
	c.AutoRegisterSchemas = false
	c.UseSchemaID = id
	return c, nil
}

// schemaKind names a schema type in errors: avro (the empty type), protobuf or json.
func schemaKind(schemaType string) string {
	if schemaType == "" {
		return "avro"
	}
	return strings.ToLower(schemaType)
}

// checkWireFormat rejects payloads too short to hold the schema id header, which confluent's
// deserializers would index out of range on.
func (b srBase) checkWireFormat(data []byte) error {
	switch {
	case data[0] == serde.MagicByteV0 && len(data) >= 5:
		return nil
	case data[0] == serde.MagicByteV1 && len(data) >= 17:
		return nil
	case data[0] == serde.MagicByteV0 || data[0] == serde.MagicByteV1:
		return fmt.Errorf("zkafka: %s formatter: payload of %d bytes is too short for the schema registry wire format", b.name, len(data))
	default:
		return fmt.Errorf("zkafka: %s formatter: payload is not in the schema registry wire format (magic byte %d)", b.name, data[0])
	}
}

// topicCache builds one value per topic, lazily and at most once per topic at a time; a build
// that fails is not cached, so a registry that was unreachable is asked again next time.
type topicCache[T any] struct {
	mu      sync.Mutex
	byTopic map[string]T
}

// get returns topic's value, building it with build on first use.
func (c *topicCache[T]) get(topic string, build func() (T, error)) (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.byTopic[topic]; ok {
		return v, nil
	}
	v, err := build()
	if err != nil {
		return v, err
	}
	if c.byTopic == nil {
		c.byTopic = map[string]T{}
	}
	c.byTopic[topic] = v
	return v, nil
}

// mockRegistryClient serializes schema registrations on confluent's in-memory mock registry:
// in confluent-kafka-go v2.14.1 the mock hands out ids from an unguarded counter and checks
// for an existing registration before taking its locks, so concurrent first writes would race.
// Everything else is passed through.
type mockRegistryClient struct {
	schemaregistry.Client
	mu sync.Mutex
}

// Register registers schema under subject, one registration at a time.
func (c *mockRegistryClient) Register(subject string, schema schemaregistry.SchemaInfo, normalize bool) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Client.Register(subject, schema, normalize)
}

// RegisterFullResponse registers schema under subject, one registration at a time.
func (c *mockRegistryClient) RegisterFullResponse(subject string, schema schemaregistry.SchemaInfo, normalize bool) (schemaregistry.SchemaMetadata, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Client.RegisterFullResponse(subject, schema, normalize)
}
