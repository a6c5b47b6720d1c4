package zkafka

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
	Marshall(v any) ([]byte, error)
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
