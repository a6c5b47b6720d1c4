package format

// The schema registry formatter, generic over confluent's serde (avro.go, proto.go and json.go
// hold each format's part), and its plumbing: the registry client per URL, subjects, serializer
// configs and the wire format check. The details are below the imports.

import (
	"fmt"
	"strings"
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"
)

// Payloads are in Confluent's wire format: a magic byte 0, the 4-byte big-endian schema id, then
// the encoded value (protobuf adds message indexes). The serializers and deserializers come from
// confluent-kafka-go's serde packages; registryFormatter creates them lazily per topic, because
// the subject (and so the schema id a writer uses) depends on the topic.

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
		return nil, configErrorf("SchemaRegistry.URL %q is not usable: %v", url, err)
	}
	if strings.HasPrefix(url, "mock://") {
		c = &mockRegistryClient{Client: c}
	}
	schemaRegistryClients.byURL[url] = c
	return c, nil
}

// registryFormatter is a schema registry formatter: confluent's serializer S and deserializer D
// of one format around that format's own part (registryFormat). Serializers and deserializers
// are made lazily, one per topic, because the subject (and so the schema id a writer uses)
// depends on the topic; a failed build is tried again on the next use.
// It is used by many goroutines: the first four fields are set by newRegistryFormatter and
// only read after; the caches guard themselves.
type registryFormatter[S serde.Serializer, D serde.Deserializer] struct {
	name   string
	client schemaregistry.Client
	cfg    Registry
	format registryFormat[S, D]
	sers   topicCache[S]
	desers topicCache[D]
}

// registryFormat is what differs between the avro, protobuf and JSON schema registry
// formatters: making the serde, checking values and targets, and decoding.
type registryFormat[S serde.Serializer, D serde.Deserializer] interface {
	// schemaType is the registry's type of a configured writer schema ("" is avro).
	schemaType() string
	// newSerializer makes a serializer with conf whose subjects come from subjects.
	newSerializer(c schemaregistry.Client, conf serde.SerializerConfig, subjects serde.SubjectNameStrategyFunc) (S, error)
	// newDeserializer makes a deserializer whose subjects come from subjects.
	newDeserializer(c schemaregistry.Client, subjects serde.SubjectNameStrategyFunc) (D, error)
	// value returns what the serializer is given for v, or why v cannot be encoded.
	value(v any) (any, error)
	// target reports why a payload cannot be decoded into t, whatever the payload.
	target(t any) error
	// decode reads data, a payload in the wire format, into target with d.
	decode(d D, topic string, data []byte, target any) error
}

// newRegistryFormatter validates the configuration the schema registry formatters share, then
// lets newFormat build the format's part; serializers and deserializers come later.
func newRegistryFormatter[S serde.Serializer, D serde.Deserializer](t Type, reg Registry,
	newFormat func(c schemaregistry.Client, reg Registry) (registryFormat[S, D], error)) (*registryFormatter[S, D], error) {
	if strings.TrimSpace(reg.URL) == "" {
		return nil, configErrorf("formatter %q needs SchemaRegistry.URL (use \"mock://<name>\" for an in-memory registry in tests)", string(t))
	}
	c, err := schemaRegistryClient(reg.URL)
	if err != nil {
		return nil, err
	}
	format, err := newFormat(c, reg)
	if err != nil {
		return nil, err
	}
	return &registryFormatter[S, D]{name: string(t), client: c, cfg: reg, format: format}, nil
}

// Encode serializes v in the wire format, with the schema serializerConfig picks.
func (f *registryFormatter[S, D]) Encode(topic string, v any) ([]byte, error) {
	var out []byte
	err := guard(f.name, "encoding", func() error {
		value, err := f.format.value(v)
		if err != nil {
			return err
		}
		s, err := f.serializer(topic)
		if err != nil {
			return err
		}
		b, err := s.Serialize(topic, value)
		if err != nil {
			return fmt.Errorf("%s formatter: encoding %T for topic %q: %w", f.name, v, topic, err)
		}
		out = b
		return nil
	})
	return out, err
}

// Decode reads a payload in the wire format into target; an empty payload (a tombstone) leaves
// target untouched, as confluent's deserializers do.
func (f *registryFormatter[S, D]) Decode(topic string, data []byte, target any) error {
	if err := f.format.target(target); err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	if err := checkWireFormat(f.name, data); err != nil {
		return err
	}
	d, err := f.deserializer(topic)
	if err != nil {
		return err
	}
	return f.format.decode(d, topic, data, target)
}

func (f *registryFormatter[S, D]) serializer(topic string) (S, error) {
	return f.sers.get(topic, func() (S, error) {
		var none S
		sc, err := f.serializerConfig(topic)
		if err != nil {
			return none, err
		}
		s, err := f.format.newSerializer(f.client, sc, f.subjectStrategy)
		if err != nil {
			return none, fmt.Errorf("%s formatter: creating the serializer: %w", f.name, err)
		}
		return s, nil
	})
}

func (f *registryFormatter[S, D]) deserializer(topic string) (D, error) {
	return f.desers.get(topic, func() (D, error) {
		d, err := f.format.newDeserializer(f.client, f.subjectStrategy)
		if err != nil {
			var none D
			return none, fmt.Errorf("%s formatter: creating the deserializer: %w", f.name, err)
		}
		return d, nil
	})
}

// withoutAvroSchema drops an avro schema from the Serialization.Schema of a protobuf or JSON
// registry formatter: zkafka v2 uses that field for avro only (protobuf and JSON schemas come
// from the Go type there), and v2 configurations carry their avro schema in it whatever the
// format. A schema of the formatter's own kind is kept and used.
func withoutAvroSchema(reg Registry) Registry {
	if s := reg.WriterSchema; s != "" {
		if _, err := parseAvroSchema(s); err == nil {
			reg.WriterSchema = ""
		}
	}
	return reg
}

// subject is the registry subject of topic's values: SubjectName when set, else the topic name
// strategy "<topic>-value".
func (f *registryFormatter[S, D]) subject(topic string) string {
	if f.cfg.SubjectName != "" {
		return f.cfg.SubjectName
	}
	return topic + "-value"
}

// subjectStrategy is f.subject as a serde.SubjectNameStrategyFunc.
func (f *registryFormatter[S, D]) subjectStrategy(topic string, _ serde.Type, _ schemaregistry.SchemaInfo) (string, error) {
	return f.subject(topic), nil
}

// serializerConfig decides how a serializer for topic finds its schema:
//   - Serialization.Schema set: that schema, registered under the subject first when
//     AutoRegisterSchemas is on, else looked up (it must already be registered);
//   - no schema, AutoRegisterSchemas on: the schema the serde derives from the value's type;
//   - no schema, AutoRegisterSchemas off: the latest version registered under the subject.
func (f *registryFormatter[S, D]) serializerConfig(topic string) (serde.SerializerConfig, error) {
	c := *serde.NewSerializerConfig()
	c.AutoRegisterSchemas = f.cfg.AutoRegister
	if f.cfg.WriterSchema == "" {
		c.UseLatestVersion = !c.AutoRegisterSchemas
		return c, nil
	}
	schemaType := f.format.schemaType()
	info := schemaregistry.SchemaInfo{Schema: f.cfg.WriterSchema, SchemaType: schemaType}
	subject := f.subject(topic)
	var id int
	var err error
	if c.AutoRegisterSchemas {
		id, err = f.client.Register(subject, info, false)
		if err != nil {
			return c, fmt.Errorf("%s formatter: registering SchemaRegistry.Serialization.Schema under subject %q: %w", f.name, subject, err)
		}
	} else {
		id, err = f.client.GetID(subject, info, false)
		if err != nil {
			return c, fmt.Errorf("%s formatter: failed to get %s schema by id: SchemaRegistry.Serialization.Schema "+
				"is not registered under subject %q (register it, or set SchemaRegistry.Serialization.AutoRegisterSchemas): %w",
				f.name, schemaKind(schemaType), subject, err)
		}
	}
	c.AutoRegisterSchemas = false
	c.UseSchemaID = id
	return c, nil
}

// deserializeInto decodes data into target with d, confluent's own decoding (protobuf, JSON).
func deserializeInto(name string, d serde.Deserializer, topic string, data []byte, target any) error {
	return guard(name, "decoding", func() error {
		if err := d.DeserializeInto(topic, data, target); err != nil {
			return fmt.Errorf("%s formatter: decoding into %T for topic %q: %w", name, target, topic, err)
		}
		return nil
	})
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
func checkWireFormat(name string, data []byte) error {
	switch {
	case data[0] == serde.MagicByteV0 && len(data) >= 5:
		return nil
	case data[0] == serde.MagicByteV1 && len(data) >= 17:
		return nil
	case data[0] == serde.MagicByteV0 || data[0] == serde.MagicByteV1:
		return fmt.Errorf("%s formatter: payload of %d bytes is too short for the schema registry wire format", name, len(data))
	default:
		return fmt.Errorf("%s formatter: payload is not in the schema registry wire format (magic byte %d)", name, data[0])
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
