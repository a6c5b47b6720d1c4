package zkafka

// The avro formatter: plain Avro binary against schemas given in the config, checked before
// decoding by formatter_avro_check.go. The schema registry variant is formatter_avro_sr.go.

import (
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/hamba/avro/v2"
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
func newAvroFormatter(sr SchemaRegistryConfig) (*avroFormatter, error) {
	ws, rs := sr.Serialization.Schema, sr.Deserialization.Schema
	if ws == "" && rs == "" {
		return nil, errConfig("formatter %q needs an avro schema: set SchemaRegistry.Serialization.Schema "+
			"(the writer schema) and/or SchemaRegistry.Deserialization.Schema (the reader schema)", AvroFmt)
	}
	var f avroFormatter
	var err error
	if ws != "" {
		if f.writer, err = parseAvroSchema(ws); err != nil {
			return nil, errConfig("SchemaRegistry.Serialization.Schema is not a valid avro schema: %v", err)
		}
	}
	if rs != "" {
		if f.reader, err = parseAvroSchema(rs); err != nil {
			return nil, errConfig("SchemaRegistry.Deserialization.Schema is not a valid avro schema: %v", err)
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
			return nil, errConfig("SchemaRegistry.Deserialization.Schema cannot read data written with "+
				"SchemaRegistry.Serialization.Schema: %v", err)
		}
		f.reader = resolved
	}
	return &f, nil
}

func (f *avroFormatter) marshall(req marshReq) ([]byte, error) {
	return avroEncode(string(AvroFmt), f.writer, req.subject)
}

func (f *avroFormatter) unmarshal(req unmarshReq) error {
	return avroDecode(string(AvroFmt), f.writer, f.reader, req.data, req.target)
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
			return fmt.Errorf("zkafka: %s formatter: encoding %T: %w", name, v, err)
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
		return fmt.Errorf("zkafka: %s formatter cannot decode into %T: need a non-nil pointer", name, target)
	}
	return guard(name, "decoding", func() error {
		if err := checkAvro(writer, data); err != nil {
			return fmt.Errorf("zkafka: %s formatter: decoding into %T: %w", name, target, err)
		}
		// Not avroAPI.Unmarshal: it reports running out of data as success (it ignores
		// io.EOF). checkAvro has ruled that out; this is the second line of defence.
		r := avro.NewReader(nil, 0, avro.WithReaderConfig(avroAPI))
		r.Reset(data)
		r.ReadVal(schema, target)
		switch {
		case errors.Is(r.Error, io.EOF) || errors.Is(r.Error, io.ErrUnexpectedEOF):
			return fmt.Errorf("zkafka: %s formatter: decoding into %T: %w", name, target, errAvroTruncated)
		case r.Error != nil:
			return fmt.Errorf("zkafka: %s formatter: decoding into %T: %w", name, target, r.Error)
		}
		return nil
	})
}
