package format

// Avro: the avro formatter (plain Avro binary against schemas given in the config) and the
// avro part of the schema registry formatter (registry.go). Payloads are checked by
// avro_check.go before hamba/avro decodes them.

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde/avrov2"
	"github.com/hamba/avro/v2"
	"github.com/zillow/zfmt"
)

// avroAPI is the hamba/avro configuration every avro formatter encodes and decodes with. The
// limits keep a corrupt length prefix in a payload from allocating without bound: a string or
// bytes value may be up to 16 MiB, an array or map up to 16 Mi elements.
var avroAPI = avro.Config{
	MaxByteSliceSize:  16 << 20,
	MaxSliceAllocSize: 16 << 20,
}.Freeze()

// avroFormatter is AvroFmt: avro binary without a registry and without a schema id in the
// payload. Both sides must therefore know the writer schema. It writes with
// SchemaRegistryConfig.Serialization.Schema and reads with Deserialization.Schema, each falling
// back to the other when only one is set; when both are configured and differ, data written
// with the Serialization schema is resolved to the Deserialization schema (avro schema
// resolution: fields the reader does not know are skipped, fields the writer did not have take
// the reader's default). Payloads that are truncated, have trailing bytes or do not follow the
// writer schema are errors.
type avroFormatter struct {
	// writer encodes, and is the schema payloads are assumed to be written with.
	writer avro.Schema
	// reader decodes: writer resolved to the reader schema, or simply the one known schema.
	reader avro.Schema
}

// newAvroFormatter parses the configured schemas; at least one is required.
func newAvroFormatter(reg Registry) (*avroFormatter, error) {
	ws, rs := reg.WriterSchema, reg.ReaderSchema
	if ws == "" && rs == "" {
		return nil, configErrorf("formatter %q needs an avro schema: set SchemaRegistry.Serialization.Schema "+
			"(the writer schema) and/or SchemaRegistry.Deserialization.Schema (the reader schema)", zfmt.AvroFmt)
	}
	var f avroFormatter
	var err error
	if ws != "" {
		if f.writer, err = parseAvroSchema(ws); err != nil {
			return nil, configErrorf("SchemaRegistry.Serialization.Schema is not a valid avro schema: %v", err)
		}
	}
	if rs != "" {
		if f.reader, err = parseAvroSchema(rs); err != nil {
			return nil, configErrorf("SchemaRegistry.Deserialization.Schema is not a valid avro schema: %v", err)
		}
	}
	switch {
	case f.writer == nil:
		f.writer = f.reader
	case f.reader == nil:
		f.reader = f.writer
	case f.reader.Fingerprint() != f.writer.Fingerprint():
		resolved, err := avro.NewSchemaCompatibility().Resolve(f.reader, f.writer)
		if err != nil {
			return nil, configErrorf("SchemaRegistry.Deserialization.Schema cannot read data written with "+
				"SchemaRegistry.Serialization.Schema: %v", err)
		}
		f.reader = resolved
	}
	return &f, nil
}

func (f *avroFormatter) Encode(_ string, v any) ([]byte, error) {
	return avroEncode(string(zfmt.AvroFmt), f.writer, v)
}

func (f *avroFormatter) Decode(_ string, data []byte, target any) error {
	return avroDecode(string(zfmt.AvroFmt), f.writer, f.reader, data, target)
}

// parseAvroSchema parses one self-contained avro schema with a cache of its own, so that two
// versions of the same named record (an old reader and a newer writer) never collide.
func parseAvroSchema(s string) (avro.Schema, error) {
	var schema avro.Schema
	err := guard("avro", "parsing the schema", func() error {
		var err error
		schema, err = avro.ParseWithCache(s, "", &avro.SchemaCache{})
		return err
	})
	return schema, err
}

// avroEncode encodes v with schema.
func avroEncode(name string, schema avro.Schema, v any) ([]byte, error) {
	var out []byte
	err := guard(name, "encoding", func() error {
		b, err := avroAPI.Marshal(schema, v)
		if err != nil {
			return fmt.Errorf("%s formatter: encoding %T: %w", name, v, err)
		}
		out = b
		return nil
	})
	return out, err
}

// avroDecode checks that data is one value written with writer and decodes it with schema (writer
// itself, or writer resolved to a reader schema) into target, a non-nil pointer.
func avroDecode(name string, writer, schema avro.Schema, data []byte, target any) error {
	if rv := reflect.ValueOf(target); rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%s formatter cannot decode into %T: need a non-nil pointer", name, target)
	}
	return guard(name, "decoding", func() error {
		if err := checkAvro(writer, data); err != nil {
			return fmt.Errorf("%s formatter: decoding into %T: %w", name, target, err)
		}
		// Not avroAPI.Unmarshal: it reports running out of data as success (it ignores
		// io.EOF). checkAvro has ruled that out; this is the second line of defence.
		r := avro.NewReader(nil, 0, avro.WithReaderConfig(avroAPI))
		r.Reset(data)
		r.ReadVal(schema, target)
		switch {
		case errors.Is(r.Error, io.EOF) || errors.Is(r.Error, io.ErrUnexpectedEOF):
			return fmt.Errorf("%s formatter: decoding into %T: %w", name, target, errAvroTruncated)
		case r.Error != nil:
			return fmt.Errorf("%s formatter: decoding into %T: %w", name, target, r.Error)
		}
		return nil
	})
}

// avroRegistry is AvroSchemaRegistry's part of the schema registry formatter.
//
// Writes use confluent's avrov2 serializer (see registryFormatter.serializerConfig for where the
// schema comes from). Reads take the writer schema from the id in the payload and decode with
// hamba/avro after avro_check.go's check; when Deserialization.Schema is set, the data is
// resolved to that reader schema, so a reader with an old schema reads data written with a newer
// compatible one (and the other way round). Without a reader schema the data is decoded with
// the writer schema.
type avroRegistry struct {
	client schemaregistry.Client
	// needsSchema is set when the writer would auto-register a schema reflected from the Go
	// type, which it refuses (see value).
	needsSchema bool
	// reader is the parsed Deserialization.Schema; nil when none is configured.
	reader avro.Schema
	// decoders maps a writer schema's text to the avroDecoder of payloads written with it.
	decoders sync.Map
}

// newAvroRegistry checks the configured schemas.
func newAvroRegistry(c schemaregistry.Client, reg Registry) (registryFormat[*avrov2.Serializer, *avrov2.Deserializer], error) {
	a := &avroRegistry{client: c, needsSchema: reg.AutoRegister && reg.WriterSchema == ""}
	if reg.WriterSchema != "" {
		if _, err := parseAvroSchema(reg.WriterSchema); err != nil {
			return nil, configErrorf("SchemaRegistry.Serialization.Schema is not a valid avro schema: %v", err)
		}
	}
	if reg.ReaderSchema != "" {
		var err error
		if a.reader, err = parseAvroSchema(reg.ReaderSchema); err != nil {
			return nil, configErrorf("SchemaRegistry.Deserialization.Schema is not a valid avro schema: %v", err)
		}
	}
	return a, nil
}

// schemaType is the empty type, which the registry reads as avro.
func (*avroRegistry) schemaType() string { return "" }

func (*avroRegistry) newSerializer(c schemaregistry.Client, conf serde.SerializerConfig, subjects serde.SubjectNameStrategyFunc) (*avrov2.Serializer, error) {
	s, err := avrov2.NewSerializer(c, serde.ValueSerde, &avrov2.SerializerConfig{SerializerConfig: conf})
	if err == nil {
		s.SubjectNameStrategy = subjects
	}
	return s, err
}

func (*avroRegistry) newDeserializer(c schemaregistry.Client, subjects serde.SubjectNameStrategyFunc) (*avrov2.Deserializer, error) {
	d, err := avrov2.NewDeserializer(c, serde.ValueSerde, avrov2.NewDeserializerConfig())
	if err == nil {
		d.SubjectNameStrategy = subjects
	}
	return d, err
}

// value hands avrov2 a pointer, which it serializes through, whatever the caller passed.
func (a *avroRegistry) value(v any) (any, error) {
	if a.needsSchema {
		// As in zkafka v2: a schema reflected from the Go type loses the fields' defaults, so
		// what it registers breaks compatible evolution.
		return nil, fmt.Errorf("%s formatter: avro schema is required for schema registry formatter "+
			"when AutoRegisterSchemas is set: set SchemaRegistry.Serialization.Schema", AvroSchemaRegistry)
	}
	rv := reflect.ValueOf(v)
	switch {
	case rv.IsValid() && rv.Kind() != reflect.Pointer:
		p := reflect.New(rv.Type())
		p.Elem().Set(rv)
		return p.Interface(), nil
	case rv.IsValid() && rv.IsNil():
		return nil, fmt.Errorf("%s formatter cannot encode a nil %T", AvroSchemaRegistry, v)
	}
	return v, nil
}

func (*avroRegistry) target(any) error { return nil }

func (a *avroRegistry) decode(d *avrov2.Deserializer, topic string, data []byte, target any) error {
	name := string(AvroSchemaRegistry)
	var info schemaregistry.SchemaInfo
	var n int
	err := guard(name, "reading the schema id", func() error {
		id := serde.SchemaID{SchemaType: avrov2.SchemaType}
		var err error
		info, n, err = d.GetWriterSchema(topic, nil, data, &id)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s formatter: finding the writer schema for topic %q: %w", name, topic, err)
	}
	dec, err := a.decoder(info)
	if err != nil {
		return err
	}
	return avroDecode(name, dec.writer, dec.schema, data[n:], target)
}

// avroDecoder is how payloads written with one writer schema are decoded.
type avroDecoder struct {
	// writer is the schema the payload was written with (it is checked against it).
	writer avro.Schema
	// schema decodes: writer, or writer resolved to the reader schema.
	schema avro.Schema
}

// decoder returns how to decode data written with the writer schema info.
func (a *avroRegistry) decoder(info schemaregistry.SchemaInfo) (avroDecoder, error) {
	name := string(AvroSchemaRegistry)
	if d, ok := a.decoders.Load(info.Schema); ok {
		return d.(avroDecoder), nil
	}
	writer, err := a.parseWithReferences(info, &avro.SchemaCache{}, 0)
	if err != nil {
		return avroDecoder{}, fmt.Errorf("%s formatter: parsing the writer schema: %w", name, err)
	}
	d := avroDecoder{writer: writer, schema: writer}
	if a.reader != nil && a.reader.Fingerprint() != writer.Fingerprint() {
		err = guard(name, "resolving schemas", func() error {
			var err error
			d.schema, err = avro.NewSchemaCompatibility().Resolve(a.reader, writer)
			return err
		})
		if err != nil {
			return avroDecoder{}, fmt.Errorf("%s formatter: SchemaRegistry.Deserialization.Schema cannot read data "+
				"written with the registered writer schema: %w", name, err)
		}
	}
	a.decoders.Store(info.Schema, d)
	return d, nil
}

// parseWithReferences parses info after the schemas it references, all into cache.
func (a *avroRegistry) parseWithReferences(info schemaregistry.SchemaInfo, cache *avro.SchemaCache, depth int) (avro.Schema, error) {
	if depth > 32 {
		return nil, fmt.Errorf("schema references nest deeper than 32 levels")
	}
	for _, ref := range info.References {
		md, err := a.client.GetSchemaMetadataIncludeDeleted(ref.Subject, ref.Version, true)
		if err != nil {
			return nil, fmt.Errorf("fetching referenced schema %s version %d: %w", ref.Subject, ref.Version, err)
		}
		if _, err := a.parseWithReferences(md.SchemaInfo, cache, depth+1); err != nil {
			return nil, err
		}
	}
	var s avro.Schema
	err := guard(string(AvroSchemaRegistry), "parsing the schema", func() error {
		var err error
		s, err = avro.ParseWithCache(info.Schema, "", cache)
		return err
	})
	return s, err
}
