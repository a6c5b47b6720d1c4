package format

// Protobuf: the formatters without a registry, proto_raw (binary), proto_base64 and proto_json,
// and the protobuf part of the schema registry formatter (registry.go).

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde/protobuf"
	"github.com/zillow/zfmt"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// protoRawFormatter is ProtoRawFmt: the protobuf wire format of a proto.Message.
type protoRawFormatter struct{}

// protoBase64Formatter is ProtoBase64Fmt: ProtoRawFmt encoded with standard base64.
type protoBase64Formatter struct{}

// protoJSONFormatter is ProtoJSONFmt: protojson of a proto.Message.
type protoJSONFormatter struct{}

func (protoRawFormatter) Encode(_ string, v any) ([]byte, error) {
	return protoEncode(string(zfmt.ProtoRawFmt), v, proto.Marshal)
}

func (protoRawFormatter) Decode(_ string, data []byte, target any) error {
	return protoDecode(string(zfmt.ProtoRawFmt), data, target, proto.Unmarshal)
}

func (protoBase64Formatter) Encode(_ string, v any) ([]byte, error) {
	raw, err := protoEncode(string(zfmt.ProtoBase64Fmt), v, proto.Marshal)
	if err != nil {
		return nil, err
	}
	out := make([]byte, base64.StdEncoding.EncodedLen(len(raw)))
	base64.StdEncoding.Encode(out, raw)
	return out, nil
}

func (protoBase64Formatter) Decode(_ string, data []byte, target any) error {
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(data)))
	n, err := base64.StdEncoding.Decode(raw, data)
	if err != nil {
		return fmt.Errorf("proto_base64 formatter: payload is not standard base64: %w", err)
	}
	return protoDecode(string(zfmt.ProtoBase64Fmt), raw[:n], target, proto.Unmarshal)
}

func (protoJSONFormatter) Encode(_ string, v any) ([]byte, error) {
	return protoEncode(string(zfmt.ProtoJSONFmt), v, protojson.Marshal)
}

func (protoJSONFormatter) Decode(_ string, data []byte, target any) error {
	return protoDecode(string(zfmt.ProtoJSONFmt), data, target, protojson.Unmarshal)
}

// protoEncode checks that v is a proto.Message and encodes it with enc.
func protoEncode(name string, v any, enc func(proto.Message) ([]byte, error)) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%s formatter cannot encode %T: it is not a proto.Message", name, v)
	}
	var out []byte
	err := guard(name, "encoding", func() error {
		b, err := enc(m)
		if err != nil {
			return fmt.Errorf("%s formatter: encoding %T: %w", name, v, err)
		}
		out = b
		return nil
	})
	return out, err
}

// protoDecode checks that target is a usable proto.Message and decodes data into it with dec.
func protoDecode(name string, data []byte, target any, dec func([]byte, proto.Message) error) error {
	m, ok := target.(proto.Message)
	if !ok {
		return fmt.Errorf("%s formatter cannot decode into %T: it is not a proto.Message", name, target)
	}
	return guard(name, "decoding", func() error {
		if !m.ProtoReflect().IsValid() {
			return fmt.Errorf("%s formatter cannot decode into a nil %T", name, target)
		}
		if err := dec(data, m); err != nil {
			return fmt.Errorf("%s formatter: decoding into %T: %w", name, target, err)
		}
		return nil
	})
}

// protoRegistry is ProtoSchemaRegistry's part of the schema registry formatter: protobuf through
// confluent's serde/protobuf. Values and targets must be generated proto.Message types. Without
// Serialization.Schema, an auto-registering writer registers the .proto file of the message
// (and its imports); see registryFormatter.serializerConfig for the rest. A configured
// Serialization.Schema must be the .proto file the message was generated from: the payload's
// message index is taken from the generated descriptor.
type protoRegistry struct{}

func newProtoRegistry(schemaregistry.Client, Registry) (registryFormat[*protobuf.Serializer, *protobuf.Deserializer], error) {
	return protoRegistry{}, nil
}

func (protoRegistry) schemaType() string { return protobuf.SchemaType }

func (protoRegistry) newSerializer(c schemaregistry.Client, conf serde.SerializerConfig, subjects serde.SubjectNameStrategyFunc) (*protobuf.Serializer, error) {
	s, err := protobuf.NewSerializer(c, serde.ValueSerde, &protobuf.SerializerConfig{SerializerConfig: conf, CacheSchemas: true})
	if err == nil {
		s.SubjectNameStrategy = subjects
	}
	return s, err
}

func (protoRegistry) newDeserializer(c schemaregistry.Client, subjects serde.SubjectNameStrategyFunc) (*protobuf.Deserializer, error) {
	d, err := protobuf.NewDeserializer(c, serde.ValueSerde, protobuf.NewDeserializerConfig())
	if err == nil {
		d.SubjectNameStrategy = subjects
	}
	return d, err
}

func (protoRegistry) value(v any) (any, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%s formatter cannot encode %T: it is not a proto.Message", ProtoSchemaRegistry, v)
	}
	if !m.ProtoReflect().IsValid() {
		return nil, fmt.Errorf("%s formatter cannot encode a nil %T", ProtoSchemaRegistry, v)
	}
	return m, nil
}

func (protoRegistry) target(t any) error {
	if _, ok := t.(proto.Message); !ok {
		return fmt.Errorf("%s formatter cannot decode into %T: it is not a proto.Message", ProtoSchemaRegistry, t)
	}
	return nil
}

func (protoRegistry) decode(d *protobuf.Deserializer, topic string, data []byte, target any) error {
	if err := checkMessageIndexes(data); err != nil {
		return err
	}
	// confluent's protobuf deserializer indexes message indexes read from the payload without
	// bounds checks; guard turns such a panic on a corrupt payload into an error.
	return guard(string(ProtoSchemaRegistry), "decoding", func() error {
		if !target.(proto.Message).ProtoReflect().IsValid() {
			return fmt.Errorf("%s formatter cannot decode into a nil %T", ProtoSchemaRegistry, target)
		}
		return deserializeInto(string(ProtoSchemaRegistry), d, topic, data, target)
	})
}

// checkMessageIndexes checks the message index list that follows the schema id. confluent's
// deserializer allocates the list at the size the payload claims before reading it, so a corrupt
// count (say 2^34) makes the process die of an out-of-memory error that cannot be recovered.
// Every index takes at least one byte, so the count cannot exceed the bytes that follow it.
func checkMessageIndexes(data []byte) error {
	rest := data[5:]
	if data[0] == serde.MagicByteV1 {
		rest = data[17:]
	}
	count, n := binary.Varint(rest)
	if n <= 0 {
		return fmt.Errorf("%s formatter: payload has no readable message index list", ProtoSchemaRegistry)
	}
	if count < 0 || count > int64(len(rest)-n) {
		return fmt.Errorf("%s formatter: payload claims %d message indexes but has %d bytes left", ProtoSchemaRegistry, count, len(rest)-n)
	}
	return nil
}
