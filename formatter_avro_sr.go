package zkafka

// The avro_schema_registry formatter: Avro in Confluent's wire format, with schemas from a
// schema registry (formatter_schemaregistry.go has the shared plumbing).

import (
	"fmt"
	"reflect"
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde"
	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/serde/avrov2"
	"github.com/hamba/avro/v2"
)

// avroSchemaRegistryFormatter is AvroSchemaRegistry: avro in the schema registry wire format.
//
// Writes use confluent's avrov2 serializer (see srBase.serializerConfig for where the schema
// comes from). Reads take the writer schema from the id in the payload; when
// Deserialization.Schema is set, the data is resolved to that reader schema, so a reader with an
// old schema reads data written with a newer compatible one (and the other way round).
// Without a reader schema the data is decoded with the writer schema.
type avroSchemaRegistryFormatter struct {
	srBase
	// reader is the parsed Deserialization.Schema; nil when none is configured.
	reader avro.Schema
	sers   topicCache[*avrov2.Serializer]
	desers topicCache[*avrov2.Deserializer]
	// decoders maps a writer schema's text to the schema payloads written with it are decoded
	// with (the writer schema, or it resolved to reader).
	decoders sync.Map
}

// newAvroSchemaRegistryFormatter validates sr; serializers and deserializers come later.
func newAvroSchemaRegistryFormatter(sr SchemaRegistryConfig) (*avroSchemaRegistryFormatter, error) {
	base, err := newSRBase(AvroSchemaRegistry, sr)
	if err != nil {
		return nil, err
	}
	f := &avroSchemaRegistryFormatter{srBase: base}
	if sr.Serialization.Schema != "" {
		if _, err := parseAvroSchema(sr.Serialization.Schema); err != nil {
			return nil, errConfig("SchemaRegistry.Serialization.Schema is not a valid avro schema: %v", err)
		}
	}
	if sr.Deserialization.Schema != "" {
		if f.reader, err = parseAvroSchema(sr.Deserialization.Schema); err != nil {
			return nil, errConfig("SchemaRegistry.Deserialization.Schema is not a valid avro schema: %v", err)
		}
	}
	return f, nil
}

func (f *avroSchemaRegistryFormatter) serializer(topic string) (*avrov2.Serializer, error) {
	return f.sers.get(topic, func() (*avrov2.Serializer, error) {
		sc, err := f.serializerConfig(topic, "")
		if err != nil {
			return nil, err
		}
		s, err := avrov2.NewSerializer(f.client, serde.ValueSerde, &avrov2.SerializerConfig{SerializerConfig: sc})
		if err != nil {
			return nil, fmt.Errorf("zkafka: %s formatter: creating the serializer: %w", f.name, err)
		}
		s.SubjectNameStrategy = f.subjectStrategy
		return s, nil
	})
}

func (f *avroSchemaRegistryFormatter) deserializer(topic string) (*avrov2.Deserializer, error) {
	return f.desers.get(topic, func() (*avrov2.Deserializer, error) {
		d, err := avrov2.NewDeserializer(f.client, serde.ValueSerde, avrov2.NewDeserializerConfig())
		if err != nil {
			return nil, fmt.Errorf("zkafka: %s formatter: creating the deserializer: %w", f.name, err)
		}
		d.SubjectNameStrategy = f.subjectStrategy
		return d, nil
	})
}

func (f *avroSchemaRegistryFormatter) marshall(req marshReq) ([]byte, error) {
	if f.cfg.Serialization.AutoRegisterSchemas && f.cfg.Serialization.Schema == "" {
		// As in zkafka v2: a schema reflected from the Go type loses the fields' defaults, so
		// what it registers breaks compatible evolution.
		return nil, fmt.Errorf("zkafka: %s formatter: avro schema is required for schema registry formatter "+
			"when AutoRegisterSchemas is set: set SchemaRegistry.Serialization.Schema", f.name)
	}
	s, err := f.serializer(req.topic)
	if err != nil {
		return nil, err
	}
	// avrov2 serializes through a pointer; hand it one whatever the caller passed.
	v := req.subject
	if rv := reflect.ValueOf(v); rv.IsValid() && rv.Kind() != reflect.Pointer {
		p := reflect.New(rv.Type())
		p.Elem().Set(rv)
		v = p.Interface()
	} else if rv.IsValid() && rv.IsNil() {
		return nil, fmt.Errorf("zkafka: %s formatter cannot encode a nil %T", f.name, req.subject)
	}
	var out []byte
	err = guard(f.name, "encoding", func() error {
		b, err := s.Serialize(req.topic, v)
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
func (f *avroSchemaRegistryFormatter) unmarshal(req unmarshReq) error {
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
	var info schemaregistry.SchemaInfo
	var n int
	err = guard(f.name, "reading the schema id", func() error {
		id := serde.SchemaID{SchemaType: avrov2.SchemaType}
		var err error
		info, n, err = d.GetWriterSchema(req.topic, nil, req.data, &id)
		return err
	})
	if err != nil {
		return fmt.Errorf("zkafka: %s formatter: finding the writer schema for topic %q: %w", f.name, req.topic, err)
	}
	dec, err := f.decoder(info)
	if err != nil {
		return err
	}
	return avroDecode(f.name, dec.writer, dec.schema, req.data[n:], req.target)
}

// avroDecoder is how payloads written with one writer schema are decoded.
type avroDecoder struct {
	// writer is the schema the payload was written with (it is checked against it).
	writer avro.Schema
	// schema decodes: writer, or writer resolved to the reader schema.
	schema avro.Schema
}

// decoder returns how to decode data written with the writer schema info.
func (f *avroSchemaRegistryFormatter) decoder(info schemaregistry.SchemaInfo) (avroDecoder, error) {
	if d, ok := f.decoders.Load(info.Schema); ok {
		return d.(avroDecoder), nil
	}
	writer, err := f.parseWithReferences(info, &avro.SchemaCache{}, 0)
	if err != nil {
		return avroDecoder{}, fmt.Errorf("zkafka: %s formatter: parsing the writer schema: %w", f.name, err)
	}
	d := avroDecoder{writer: writer, schema: writer}
	if f.reader != nil && f.reader.Fingerprint() != writer.Fingerprint() {
		err = guard(f.name, "resolving schemas", func() error {
			var err error
			d.schema, err = avro.NewSchemaCompatibility().Resolve(f.reader, writer)
			return err
		})
		if err != nil {
			return avroDecoder{}, fmt.Errorf("zkafka: %s formatter: SchemaRegistry.Deserialization.Schema cannot read data "+
				"written with the registered writer schema: %w", f.name, err)
		}
	}
	f.decoders.Store(info.Schema, d)
	return d, nil
}

// parseWithReferences parses info after the schemas it references, all into cache.
func (f *avroSchemaRegistryFormatter) parseWithReferences(info schemaregistry.SchemaInfo, cache *avro.SchemaCache, depth int) (avro.Schema, error) {
	if depth > 32 {
		return nil, fmt.Errorf("schema references nest deeper than 32 levels")
	}
	for _, ref := range info.References {
		md, err := f.client.GetSchemaMetadataIncludeDeleted(ref.Subject, ref.Version, true)
		if err != nil {
			return nil, fmt.Errorf("fetching referenced schema %s version %d: %w", ref.Subject, ref.Version, err)
		}
		if _, err := f.parseWithReferences(md.SchemaInfo, cache, depth+1); err != nil {
			return nil, err
		}
	}
	var s avro.Schema
	err := guard(f.name, "parsing the schema", func() error {
		var err error
		s, err = avro.ParseWithCache(info.Schema, "", cache)
		return err
	})
	return s, err
}
