package format

// JSON: the json formatter (zkafka's default, encoding/json) and the JSON Schema part of the
// schema registry formatter (registry.go).

import (
	"encoding/json"
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde/jsonschema"
)

// jsonFormatter is JSONFmt: encoding/json both ways.
type jsonFormatter struct{}

func (jsonFormatter) Encode(_ string, v any) ([]byte, error) {
	var out []byte
	err := guard("json", "encoding", func() error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("json formatter: encoding %T: %w", v, err)
		}
		out = b
		return nil
	})
	return out, err
}

func (jsonFormatter) Decode(_ string, data []byte, target any) error {
	return guard("json", "decoding", func() error {
		if err := json.Unmarshal(data, target); err != nil {
			return fmt.Errorf("json formatter: decoding into %T: %w", target, err)
		}
		return nil
	})
}

// jsonRegistry is JSONSchemaRegistry's part of the schema registry formatter: JSON through
// confluent's serde/jsonschema. When Serialization.Schema is set, writes are validated against
// it; without it, an auto-registering writer registers a schema reflected from the value's Go
// type (see registryFormatter.serializerConfig for the rest). Reads decode with encoding/json.
type jsonRegistry struct {
	// validate is whether writes are checked against the configured schema.
	validate bool
}

func newJSONRegistry(_ schemaregistry.Client, reg Registry) (registryFormat[*jsonschema.Serializer, *jsonschema.Deserializer], error) {
	return jsonRegistry{validate: reg.WriterSchema != ""}, nil
}

func (jsonRegistry) schemaType() string { return jsonschema.SchemaType }

func (j jsonRegistry) newSerializer(c schemaregistry.Client, conf serde.SerializerConfig, subjects serde.SubjectNameStrategyFunc) (*jsonschema.Serializer, error) {
	s, err := jsonschema.NewSerializer(c, serde.ValueSerde, &jsonschema.SerializerConfig{SerializerConfig: conf, EnableValidation: j.validate})
	if err == nil {
		s.SubjectNameStrategy = subjects
	}
	return s, err
}

func (jsonRegistry) newDeserializer(c schemaregistry.Client, subjects serde.SubjectNameStrategyFunc) (*jsonschema.Deserializer, error) {
	d, err := jsonschema.NewDeserializer(c, serde.ValueSerde, jsonschema.NewDeserializerConfig())
	if err == nil {
		d.SubjectNameStrategy = subjects
	}
	return d, err
}

func (jsonRegistry) value(v any) (any, error) { return v, nil }

func (jsonRegistry) target(any) error { return nil }

func (jsonRegistry) decode(d *jsonschema.Deserializer, topic string, data []byte, target any) error {
	return deserializeInto(string(JSONSchemaRegistry), d, topic, data, target)
}
