package zkafka

// Formatters: the FormatterType names a config may use, the Formatter interface users
// implement, and getFormatter, which picks the implementation (formatter_*.go, one format a
// file; the schema registry ones share formatter_schemaregistry.go). Readers (reader.go) decode
// with it through Message.Decode; writers (writer.go) encode with it.

import "fmt"

// FormatterType names a payload format. The zero value means JSONFmt.
type FormatterType string

// The formatter types a config may name.
const (
	// JSONFmt encodes with encoding/json (the default).
	JSONFmt FormatterType = "json"
	// StringFmt writes strings and byte slices as they are.
	StringFmt FormatterType = "string"
	// ProtoRawFmt encodes proto.Message values in the protobuf wire format.
	ProtoRawFmt FormatterType = "proto_raw"
	// ProtoBase64Fmt is ProtoRawFmt, base64-encoded.
	ProtoBase64Fmt FormatterType = "proto_base64"
	// ProtoJSONFmt encodes proto.Message values with protojson.
	ProtoJSONFmt FormatterType = "proto_json"
	// AvroFmt encodes with hamba/avro against SchemaRegistryConfig's schemas, without a registry.
	AvroFmt FormatterType = "avro"
	// CustomFmt means the formatter is passed with RFormatterOption / WFormatterOption.
	CustomFmt FormatterType = "custom"
	// AvroSchemaRegistry encodes avro in the schema registry wire format.
	AvroSchemaRegistry FormatterType = "avro_schema_registry"
	// ProtobufSchemaRegistry encodes protobuf in the schema registry wire format.
	ProtobufSchemaRegistry FormatterType = "proto_schema_registry"
	// JSONSchemaRegistry encodes JSON in the schema registry wire format.
	JSONSchemaRegistry FormatterType = "json_schema_registry"
)

// Formatter turns values into payloads and back. Implement it to plug in a format of your own
// (with FormatterType CustomFmt and RFormatterOption / WFormatterOption).
type Formatter interface {
	// Marshall encodes v into a message value.
	Marshall(v any) ([]byte, error)
	// Unmarshal decodes the message value b into v, usually a pointer. It must return an
	// error, not panic, for a value it cannot read.
	Unmarshal(b []byte, v any) error
}

// marshReq is what a kFormatter needs to encode a value.
type marshReq struct {
	topic   string
	subject any
}

// unmarshReq is what a kFormatter needs to decode a payload.
type unmarshReq struct {
	topic  string
	data   []byte
	target any
}

// kFormatter is the internal formatter interface: schema registry formatters need the topic.
type kFormatter interface {
	marshall(req marshReq) ([]byte, error)
	unmarshal(req unmarshReq) error
}

// knownFormatters lists the formatter names getFormatter accepts, for error messages.
const knownFormatters = "one of json, string, proto_raw, proto_base64, proto_json, avro, custom, " +
	"avro_schema_registry, proto_schema_registry, json_schema_registry"

// getFormatter builds the formatter a config names. The empty name means JSONFmt. CustomFmt
// returns a nil formatter and no error: the caller supplies one with RFormatterOption or
// WFormatterOption. Unknown names and incomplete schema configurations are configuration
// errors; getFormatter never panics.
func getFormatter(ft FormatterType, sr SchemaRegistryConfig) (kFormatter, error) {
	switch ft {
	case "", JSONFmt:
		return jsonFormatter{}, nil
	case StringFmt:
		return stringFormatter{}, nil
	case ProtoRawFmt:
		return protoRawFormatter{}, nil
	case ProtoBase64Fmt:
		return protoBase64Formatter{}, nil
	case ProtoJSONFmt:
		return protoJSONFormatter{}, nil
	case AvroFmt:
		return newAvroFormatter(sr)
	case CustomFmt:
		return nil, nil
	case AvroSchemaRegistry:
		return newAvroSchemaRegistryFormatter(sr)
	case ProtobufSchemaRegistry:
		return newProtoSchemaRegistryFormatter(sr)
	case JSONSchemaRegistry:
		return newJSONSchemaRegistryFormatter(sr)
	default:
		return nil, errConfig("formatter %q is not a known formatter (%s)", string(ft), knownFormatters)
	}
}

// guard runs f and turns a panic inside it (a library that panics on bad input) into an
// error, so that a bad payload or value fails one message instead of crashing the worker.
func guard(name, op string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("zkafka: %s formatter: %s failed: %v", name, op, r)
		}
	}()
	return f()
}
