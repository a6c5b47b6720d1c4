package zkafka

// The json_schema_registry formatter: JSON Schema in Confluent's wire format, with schemas
// from a schema registry (formatter_schemaregistry.go has the shared plumbing).

import (
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde/jsonschema"
)

// jsonSchemaRegistryFormatter is JSONSchemaRegistry: JSON in the schema registry wire format,
// through confluent's serde/jsonschema. When Serialization.Schema is set, writes are validated
// against it; without it, an auto-registering writer registers a schema reflected from the
// value's Go type (see srBase.serializerConfig for the rest). Reads decode with encoding/json.
type jsonSchemaRegistryFormatter struct {
	srBase
	sers   topicCache[*jsonschema.Serializer]
	desers topicCache[*jsonschema.Deserializer]
}

// newJSONSchemaRegistryFormatter validates sr; serializers and deserializers come later.
func newJSONSchemaRegistryFormatter(sr SchemaRegistryConfig) (*jsonSchemaRegistryFormatter, error) {
	base, err := newSRBase(JSONSchemaRegistry, withoutAvroSchema(sr))
	if err != nil {
		return nil, err
	}
	return &jsonSchemaRegistryFormatter{srBase: base}, nil
}

func (f *jsonSchemaRegistryFormatter) serializer(topic string) (*jsonschema.Serializer, error) {
	return f.sers.get(topic, func() (*jsonschema.Serializer, error) {
		sc, err := f.serializerConfig(topic, "JSON")
		if err != nil {
			return nil, err
		}
		conf := &jsonschema.SerializerConfig{SerializerConfig: sc, EnableValidation: f.cfg.Serialization.Schema != ""}
		s, err := jsonschema.NewSerializer(f.client, serde.ValueSerde, conf)
		if err != nil {
			return nil, fmt.Errorf("zkafka: %s formatter: creating the serializer: %w", f.name, err)
		}
		s.SubjectNameStrategy = f.subjectStrategy
		return s, nil
	})
}

func (f *jsonSchemaRegistryFormatter) deserializer(topic string) (*jsonschema.Deserializer, error) {
	return f.desers.get(topic, func() (*jsonschema.Deserializer, error) {
		d, err := jsonschema.NewDeserializer(f.client, serde.ValueSerde, jsonschema.NewDeserializerConfig())
		if err != nil {
			return nil, fmt.Errorf("zkafka: %s formatter: creating the deserializer: %w", f.name, err)
		}
		d.SubjectNameStrategy = f.subjectStrategy
		return d, nil
	})
}

func (f *jsonSchemaRegistryFormatter) marshall(req marshReq) ([]byte, error) {
	s, err := f.serializer(req.topic)
	if err != nil {
		return nil, err
	}
	var out []byte
	err = guard(f.name, "encoding", func() error {
		b, err := s.Serialize(req.topic, req.subject)
		if err != nil {
			return fmt.Errorf("zkafka: %s formatter: encoding %T for topic %q: %w", f.name, req.subject, req.topic, err)
		}
		out = b
		return nil
	})
	return out, err
}

// unmarshal decodes a payload; an empty payload (a tombstone) leaves target untouched, as
// confluent's deserializers do.
func (f *jsonSchemaRegistryFormatter) unmarshal(req unmarshReq) error {
	if len(req.data) == 0 {
		return nil
	}
	if err := f.checkWireFormat(req.data); err != nil {
		return err
	}
	d, err := f.deserializer(req.topic)
	if err != nil {
		return err
	}
	return guard(f.name, "decoding", func() error {
		if err := d.DeserializeInto(req.topic, req.data, req.target); err != nil {
			return fmt.Errorf("zkafka: %s formatter: decoding into %T for topic %q: %w", f.name, req.target, req.topic, err)
		}
		return nil
	})
}
