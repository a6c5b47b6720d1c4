package zkafka

// The proto_schema_registry formatter: protobuf in Confluent's wire format, with schemas from
// a schema registry (formatter_schemaregistry.go has the shared plumbing).

import (
	"encoding/binary"
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde/protobuf"
	"google.golang.org/protobuf/proto"
)

// protoSchemaRegistryFormatter is ProtoSchemaRegistry: protobuf in the schema registry wire
// format, through confluent's serde/protobuf. Values and targets must be generated
// proto.Message types. Without Serialization.Schema, an auto-registering writer registers the
// .proto file of the message (and its imports); see srBase.serializerConfig for the rest. A
// configured Serialization.Schema must be the .proto file the message was generated from: the
// payload's message index is taken from the generated descriptor.
type protoSchemaRegistryFormatter struct {
	srBase
	sers   topicCache[*protobuf.Serializer]
	desers topicCache[*protobuf.Deserializer]
}

// newProtoSchemaRegistryFormatter validates sr; serializers and deserializers come later.
func newProtoSchemaRegistryFormatter(sr SchemaRegistryConfig) (*protoSchemaRegistryFormatter, error) {
	base, err := newSRBase(ProtoSchemaRegistry, withoutAvroSchema(sr))
	if err != nil {
		return nil, err
	}
	return &protoSchemaRegistryFormatter{srBase: base}, nil
}

func (f *protoSchemaRegistryFormatter) serializer(topic string) (*protobuf.Serializer, error) {
	return f.sers.get(topic, func() (*protobuf.Serializer, error) {
		sc, err := f.serializerConfig(topic, protobuf.SchemaType)
		if err != nil {
			return nil, err
		}
		conf := &protobuf.SerializerConfig{SerializerConfig: sc, CacheSchemas: true}
		s, err := protobuf.NewSerializer(f.client, serde.ValueSerde, conf)
		if err != nil {
			return nil, fmt.Errorf("zkafka: %s formatter: creating the serializer: %w", f.name, err)
		}
		s.SubjectNameStrategy = f.subjectStrategy
		return s, nil
	})
}

func (f *protoSchemaRegistryFormatter) deserializer(topic string) (*protobuf.Deserializer, error) {
	return f.desers.get(topic, func() (*protobuf.Deserializer, error) {
		d, err := protobuf.NewDeserializer(f.client, serde.ValueSerde, protobuf.NewDeserializerConfig())
		if err != nil {
			return nil, fmt.Errorf("zkafka: %s formatter: creating the deserializer: %w", f.name, err)
		}
		d.SubjectNameStrategy = f.subjectStrategy
		return d, nil
	})
}

func (f *protoSchemaRegistryFormatter) marshall(req marshReq) ([]byte, error) {
	m, ok := req.subject.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("zkafka: %s formatter cannot encode %T: it is not a proto.Message", f.name, req.subject)
	}
	s, err := f.serializer(req.topic)
	if err != nil {
		return nil, err
	}
	var out []byte
	err = guard(f.name, "encoding", func() error {
		if !m.ProtoReflect().IsValid() {
			return fmt.Errorf("zkafka: %s formatter cannot encode a nil %T", f.name, req.subject)
		}
		b, err := s.Serialize(req.topic, m)
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
func (f *protoSchemaRegistryFormatter) unmarshal(req unmarshReq) error {
	m, ok := req.target.(proto.Message)
	if !ok {
		return fmt.Errorf("zkafka: %s formatter cannot decode into %T: it is not a proto.Message", f.name, req.target)
	}
	if len(req.data) == 0 {
		return nil
	}
	if err := f.checkWireFormat(req.data); err != nil {
		return err
	}
	if err := f.checkMessageIndexes(req.data); err != nil {
		return err
	}
	d, err := f.deserializer(req.topic)
	if err != nil {
		return err
	}
	// confluent's protobuf deserializer indexes message indexes read from the payload without
	// bounds checks; guard turns such a panic on a corrupt payload into an error.
	return guard(f.name, "decoding", func() error {
		if !m.ProtoReflect().IsValid() {
			return fmt.Errorf("zkafka: %s formatter cannot decode into a nil %T", f.name, req.target)
		}
		if err := d.DeserializeInto(req.topic, req.data, m); err != nil {
			return fmt.Errorf("zkafka: %s formatter: decoding into %T for topic %q: %w", f.name, req.target, req.topic, err)
		}
		return nil
	})
}

// checkMessageIndexes checks the message index list that follows the schema id. confluent's
// deserializer allocates the list at the size the payload claims before reading it, so a corrupt
// count (say 2^34) makes the process die of an out-of-memory error that cannot be recovered.
// Every index takes at least one byte, so the count cannot exceed the bytes that follow it.
func (f *protoSchemaRegistryFormatter) checkMessageIndexes(data []byte) error {
	rest := data[5:]
	if data[0] == serde.MagicByteV1 {
		rest = data[17:]
	}
	count, n := binary.Varint(rest)
	if n <= 0 {
		return fmt.Errorf("zkafka: %s formatter: payload has no readable message index list", f.name)
	}
	if count < 0 || count > int64(len(rest)-n) {
		return fmt.Errorf("zkafka: %s formatter: payload claims %d message indexes but has %d bytes left", f.name, count, len(rest)-n)
	}
	return nil
}
