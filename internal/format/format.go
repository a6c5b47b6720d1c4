// Package format holds zkafka's payload formatters: json, string, the protobuf formats, avro,
// zfmt's schema id formats and the schema registry formats (avro, protobuf and JSON Schema in
// Confluent's wire format, one formatter generic over confluent's serde packages).
//
// The seam is New, which builds the Formatter a FormatterType names from a Registry
// configuration, and the Formatter interface readers and writers call with the topic. The root
// package keeps the user-facing names (zkafka.Formatter, the FormatterType constants,
// SchemaRegistryConfig) and turns its configuration into a Registry.
//
// Errors carry no "zkafka: " prefix: they are made to be wrapped by the root package, which
// adds it once. Configuration errors are *ConfigError. Every formatter returns an error, never
// panics, for a value it cannot encode or a payload it cannot decode.
//
// Files: json.go, string.go, proto.go and avro.go hold one format each (with the format's part
// of the schema registry formatter); avro_check.go the bounds check of avro payloads;
// registry.go the schema registry formatter and its plumbing.
package format

import (
	"fmt"

	"github.com/zillow/zfmt"
)

// Type names a payload format; it is zfmt's type, as in zkafka v2.
type Type = zfmt.FormatterType

// The formatter types of this package that zfmt does not name.
const (
	// Custom means the caller supplies the formatter; New returns none for it.
	Custom Type = "custom"
	// AvroSchemaRegistry is avro in the schema registry wire format.
	AvroSchemaRegistry Type = "avro_schema_registry"
	// ProtoSchemaRegistry is protobuf in the schema registry wire format.
	ProtoSchemaRegistry Type = "proto_schema_registry"
	// JSONSchemaRegistry is JSON in the schema registry wire format.
	JSONSchemaRegistry Type = "json_schema_registry"
)

// Names lists the formatter names New accepts, for error messages.
const Names = "one of json, string, proto_raw, proto_base64, proto_json, avro, custom, " +
	"avro_schema_registry, proto_schema_registry, json_schema_registry, avro_schema, json_schema"

// Formatter encodes values into payloads and decodes payloads, for one topic at a time: the
// schema registry formatters pick the subject (and so the schema) by topic. Implementations are
// safe for concurrent use.
type Formatter interface {
	// Encode turns v into the payload of a record of topic.
	Encode(topic string, v any) ([]byte, error)
	// Decode reads the payload data of a record of topic into target, usually a pointer.
	Decode(topic string, data []byte, target any) error
}

// Registry is the schema configuration of a formatter: zkafka's SchemaRegistryConfig,
// flattened. Error messages name the fields by their place in SchemaRegistryConfig.
type Registry struct {
	// URL of the schema registry (SchemaRegistry.URL); "mock://name" is an in-memory registry
	// shared by name within the process.
	URL string
	// SubjectName overrides the subject (default "<topic>-value").
	SubjectName string
	// WriterSchema is SchemaRegistry.Serialization.Schema.
	WriterSchema string
	// AutoRegister is SchemaRegistry.Serialization.AutoRegisterSchemas.
	AutoRegister bool
	// ReaderSchema is SchemaRegistry.Deserialization.Schema.
	ReaderSchema string
}

// New builds the formatter t names. The empty name means json. Custom returns a nil formatter
// and no error: the caller supplies one. schemaID is the id zfmt's schema id formats write.
// Unknown names and incomplete schema configurations are *ConfigError; New never panics.
func New(t Type, schemaID int, reg Registry) (Formatter, error) {
	switch t {
	case "", zfmt.JSONFmt:
		return jsonFormatter{}, nil
	case zfmt.StringFmt:
		return stringFormatter{}, nil
	case zfmt.ProtoRawFmt:
		return protoRawFormatter{}, nil
	case zfmt.ProtoBase64Fmt:
		return protoBase64Formatter{}, nil
	case zfmt.ProtoJSONFmt:
		return protoJSONFormatter{}, nil
	case zfmt.AvroFmt:
		if reg.WriterSchema == "" && reg.ReaderSchema == "" {
			return Guard(string(t), &zfmt.AvroFormatter{}), nil
		}
		return newAvroFormatter(reg)
	case zfmt.AvroSchemaFmt, zfmt.JSONSchemaFmt:
		f, err := zfmt.GetFormatter(t, schemaID)
		if err != nil {
			return nil, configErrorf("formatter %q: %v", string(t), err)
		}
		return Guard(string(t), f), nil
	case zfmt.ProtoSchemaDeprecatedFmt:
		return nil, configErrorf("formatter %q is not supported: its payloads are not the schema registry's "+
			"protobuf wire format; use %q (ProtoSchemaRegistry) with SchemaRegistry.URL", string(t), string(ProtoSchemaRegistry))
	case Custom:
		return nil, nil
	case AvroSchemaRegistry:
		return newRegistryFormatter(t, reg, newAvroRegistry)
	case ProtoSchemaRegistry:
		return newRegistryFormatter(t, withoutAvroSchema(reg), newProtoRegistry)
	case JSONSchemaRegistry:
		return newRegistryFormatter(t, withoutAvroSchema(reg), newJSONRegistry)
	default:
		return nil, configErrorf("formatter %q is not a known formatter (%s)", string(t), Names)
	}
}

// Known reports whether New accepts t (the empty name means json). zfmt's
// ProtoSchemaDeprecatedFmt is not known: New refuses it.
func Known(t Type) bool {
	switch t {
	case "", zfmt.JSONFmt, zfmt.StringFmt, zfmt.ProtoRawFmt, zfmt.ProtoBase64Fmt, zfmt.ProtoJSONFmt, zfmt.AvroFmt,
		Custom, AvroSchemaRegistry, ProtoSchemaRegistry, JSONSchemaRegistry, zfmt.AvroSchemaFmt, zfmt.JSONSchemaFmt:
		return true
	}
	return false
}

// Codec is a formatter that does not need the topic: the method set of zkafka.Formatter and of
// zfmt.Formatter.
type Codec interface {
	Marshall(v any) ([]byte, error)
	Unmarshal(b []byte, v any) error
}

// Wrap serves c, a formatter the user supplied, as a Formatter. Its errors and panics are
// passed through as they are.
func Wrap(c Codec) Formatter { return codecFormatter{c} }

// Guard serves c as a Formatter that turns a panic inside c into an error naming name, so
// that a bad payload or value fails one message instead of crashing the worker.
func Guard(name string, c Codec) Formatter { return guardedFormatter{name: name, c: c} }

type codecFormatter struct{ c Codec }

func (f codecFormatter) Encode(_ string, v any) ([]byte, error) { return f.c.Marshall(v) }

func (f codecFormatter) Decode(_ string, data []byte, target any) error {
	return f.c.Unmarshal(data, target)
}

type guardedFormatter struct {
	name string
	c    Codec
}

func (f guardedFormatter) Encode(_ string, v any) (b []byte, err error) {
	err = guard(f.name, "encoding", func() (err error) {
		b, err = f.c.Marshall(v)
		return err
	})
	return b, err
}

func (f guardedFormatter) Decode(_ string, data []byte, target any) error {
	return guard(f.name, "decoding", func() error { return f.c.Unmarshal(data, target) })
}

// guard runs f and turns a panic inside it (a library that panics on bad input) into an
// error, so that a bad payload or value fails one message instead of crashing the worker.
func guard(name, op string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s formatter: %s failed: %v", name, op, r)
		}
	}()
	return f()
}

// ConfigError is a formatter configuration a person has to fix: an unknown formatter name, a
// missing schema registry URL, a schema that does not parse. Retrying does not help.
type ConfigError struct {
	msg string
}

// Error returns the message, a sentence naming the configuration field.
func (e *ConfigError) Error() string { return e.msg }

// configErrorf builds a *ConfigError.
func configErrorf(format string, args ...any) error {
	return &ConfigError{msg: fmt.Sprintf(format, args...)}
}
