package format

import (
	"encoding/binary"
	"sync"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry"
	"github.com/stretchr/testify/require"
	"github.com/zillow/zfmt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Schema evolution and schema registry behaviour.

func TestAvroEvolutionOldReaderReadsNewerData(t *testing.T) {
	// The producer writes with v2; the consumer knows both schemas (plain avro carries no
	// schema id) and reads with v1.
	w := mustFormatter(t, zfmt.AvroFmt, Registry{WriterSchema: personV2Schema})
	b, err := w.Encode("t", personV2{Name: "ann", Age: 31, Email: "a@x"})
	require.NoError(t, err)

	r := mustFormatter(t, zfmt.AvroFmt, Registry{
		WriterSchema: personV2Schema,
		ReaderSchema: personV1Schema,
	})
	var got personV1
	require.NoError(t, r.Decode("t", b, &got))
	require.Equal(t, personV1{Name: "ann", Age: 31}, got)

	// Without resolution, reading v2 bytes as v1 would only work by accident: the reader
	// must not be configured with v1 alone and silently misread. Check the resolved reader
	// also rejects truncated data.
	require.Error(t, r.Decode("t", b[:2], &got))
}

func TestAvroEvolutionNewReaderReadsOlderDataWithDefault(t *testing.T) {
	w := mustFormatter(t, zfmt.AvroFmt, Registry{WriterSchema: personV1Schema})
	b, err := w.Encode("t", personV1{Name: "bo", Age: 4})
	require.NoError(t, err)
	r := mustFormatter(t, zfmt.AvroFmt, Registry{
		WriterSchema: personV1Schema,
		ReaderSchema: personV2Schema,
	})
	var got personV2
	require.NoError(t, r.Decode("t", b, &got))
	require.Equal(t, personV2{Name: "bo", Age: 4, Email: "none"}, got)
}

func TestAvroSchemaRegistryEvolution(t *testing.T) {
	url := mockURL(t)
	const topic = "people"
	// An old producer registers and writes v1, a newer one registers and writes v2.
	w1 := mustFormatter(t, AvroSchemaRegistry, Registry{URL: url, AutoRegister: true, WriterSchema: personV1Schema})
	b1, err := w1.Encode(topic, personV1{Name: "old", Age: 1})
	require.NoError(t, err)
	w2 := mustFormatter(t, AvroSchemaRegistry, Registry{URL: url, AutoRegister: true, WriterSchema: personV2Schema})
	b2, err := w2.Encode(topic, personV2{Name: "new", Age: 2, Email: "n@x"})
	require.NoError(t, err)
	require.NotEqual(t, binary.BigEndian.Uint32(b1[1:5]), binary.BigEndian.Uint32(b2[1:5]), "each version has its own id")

	t.Run("old reader schema reads newer data", func(t *testing.T) {
		r := mustFormatter(t, AvroSchemaRegistry, Registry{URL: url, ReaderSchema: personV1Schema})
		var got personV1
		require.NoError(t, r.Decode(topic, b2, &got))
		require.Equal(t, personV1{Name: "new", Age: 2}, got)
		got = personV1{}
		require.NoError(t, r.Decode(topic, b1, &got))
		require.Equal(t, personV1{Name: "old", Age: 1}, got)
	})
	t.Run("new reader schema reads older data with the default", func(t *testing.T) {
		r := mustFormatter(t, AvroSchemaRegistry, Registry{URL: url, ReaderSchema: personV2Schema})
		var got personV2
		require.NoError(t, r.Decode(topic, b1, &got))
		require.Equal(t, personV2{Name: "old", Age: 1, Email: "none"}, got)
	})
	t.Run("no reader schema decodes with the writer schema", func(t *testing.T) {
		r := mustFormatter(t, AvroSchemaRegistry, Registry{URL: url})
		var got personV2
		require.NoError(t, r.Decode(topic, b2, &got))
		require.Equal(t, personV2{Name: "new", Age: 2, Email: "n@x"}, got)
	})
	t.Run("incompatible reader schema is an error", func(t *testing.T) {
		r := mustFormatter(t, AvroSchemaRegistry, Registry{URL: url,
			ReaderSchema: `{"type":"record","name":"Person","namespace":"zkafka.test","fields":[{"name":"id","type":"long"}]}`,
		})
		var got struct {
			ID int64 `avro:"id"`
		}
		err := r.Decode(topic, b1, &got)
		require.ErrorContains(t, err, "cannot read data written with the registered writer schema")
	})
}

func TestSchemaRegistryWriterWithoutAutoRegister(t *testing.T) {
	url := mockURL(t)
	const topic = "strict"
	sr := Registry{URL: url, WriterSchema: personV1Schema}
	w := mustFormatter(t, AvroSchemaRegistry, sr)
	_, err := w.Encode(topic, personV1{Name: "a", Age: 1})
	require.ErrorContains(t, err, `SchemaRegistry.Serialization.Schema is not registered under subject "strict-value"`)

	// Once registered out of band, the same formatter writes with it (a failed lookup is
	// not cached).
	c, err := schemaRegistryClient(url)
	require.NoError(t, err)
	id, err := c.Register("strict-value", schemaregistry.SchemaInfo{Schema: personV1Schema}, false)
	require.NoError(t, err)
	b, err := w.Encode(topic, personV1{Name: "a", Age: 1})
	require.NoError(t, err)
	require.Equal(t, uint32(id), binary.BigEndian.Uint32(b[1:5]))

	// Without a configured schema and without auto-registration the latest version is used.
	latest := mustFormatter(t, AvroSchemaRegistry, Registry{URL: url})
	b, err = latest.Encode(topic, personV1{Name: "b", Age: 2})
	require.NoError(t, err)
	require.Equal(t, uint32(id), binary.BigEndian.Uint32(b[1:5]))
	var got personV1
	require.NoError(t, latest.Decode(topic, b, &got))
	require.Equal(t, personV1{Name: "b", Age: 2}, got)

	_, err = latest.Encode("no-such-subject", personV1{})
	require.Error(t, err)
}

func TestSchemaRegistrySubjectName(t *testing.T) {
	url := mockURL(t)
	sr := Registry{URL: url, SubjectName: "people-subject", AutoRegister: true, WriterSchema: personV1Schema}
	w := mustFormatter(t, AvroSchemaRegistry, sr)
	b, err := w.Encode("any-topic", personV1{Name: "s", Age: 1})
	require.NoError(t, err)
	c, err := schemaRegistryClient(url)
	require.NoError(t, err)
	md, err := c.GetLatestSchemaMetadata("people-subject")
	require.NoError(t, err)
	require.Equal(t, uint32(md.ID), binary.BigEndian.Uint32(b[1:5]))
	_, err = c.GetLatestSchemaMetadata("any-topic-value")
	require.Error(t, err, "the topic name strategy is not used when SubjectName is set")

	// A reader on another topic with the same SubjectName finds the schema.
	r := mustFormatter(t, AvroSchemaRegistry, Registry{URL: url, SubjectName: "people-subject"})
	var got personV1
	require.NoError(t, r.Decode("other-topic", b, &got))
	require.Equal(t, personV1{Name: "s", Age: 1}, got)
}

func TestMockRegistrySharedByURL(t *testing.T) {
	url := mockURL(t)
	a, err := schemaRegistryClient(url)
	require.NoError(t, err)
	b, err := schemaRegistryClient(url)
	require.NoError(t, err)
	require.Same(t, a, b)
	other, err := schemaRegistryClient(mockURL(t))
	require.NoError(t, err)
	require.NotSame(t, a, other)

	// Data written through one mock registry cannot be read through another.
	w := mustFormatter(t, AvroSchemaRegistry, Registry{URL: url, AutoRegister: true, WriterSchema: personV1Schema})
	payload, err := w.Encode("t", personV1{Name: "x"})
	require.NoError(t, err)
	r := mustFormatter(t, AvroSchemaRegistry, Registry{URL: mockURL(t)})
	require.Error(t, r.Decode("t", payload, &personV1{}))
}

func TestProtoSchemaRegistryConfiguredSchema(t *testing.T) {
	url := mockURL(t)
	// The configured schema must be the .proto file the message was generated from: the
	// payload's message index comes from the generated descriptor (StringValue is the 8th
	// message of wrappers.proto).
	const schema = `syntax = "proto3";
package google.protobuf;
message DoubleValue { double value = 1; }
message FloatValue { float value = 1; }
message Int64Value { int64 value = 1; }
message UInt64Value { uint64 value = 1; }
message Int32Value { int32 value = 1; }
message UInt32Value { uint32 value = 1; }
message BoolValue { bool value = 1; }
message StringValue { string value = 1; }
message BytesValue { bytes value = 1; }
`
	sr := Registry{URL: url, AutoRegister: true, WriterSchema: schema}
	w := mustFormatter(t, ProtoSchemaRegistry, sr)
	b, err := w.Encode("p", wrapperspb.String("configured"))
	require.NoError(t, err)
	c, err := schemaRegistryClient(url)
	require.NoError(t, err)
	md, err := c.GetLatestSchemaMetadata("p-value")
	require.NoError(t, err)
	require.Equal(t, "PROTOBUF", md.SchemaType)
	require.Equal(t, uint32(md.ID), binary.BigEndian.Uint32(b[1:5]))

	r := mustFormatter(t, ProtoSchemaRegistry, Registry{URL: url})
	var got wrapperspb.StringValue
	require.NoError(t, r.Decode("p", b, &got))
	require.True(t, proto.Equal(wrapperspb.String("configured"), &got))
}

func TestJSONSchemaRegistryValidatesAgainstConfiguredSchema(t *testing.T) {
	url := mockURL(t)
	sr := Registry{URL: url, AutoRegister: true, WriterSchema: personJSONSchema}
	w := mustFormatter(t, JSONSchemaRegistry, sr)
	_, err := w.Encode("j", map[string]any{"name": 5})
	require.Error(t, err, "a value that breaks the configured schema is not written")
	b, err := w.Encode("j", map[string]any{"name": "ok", "age": 3})
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, w.Decode("j", b, &got))
	require.Equal(t, map[string]any{"name": "ok", "age": float64(3)}, got)
}

func TestSchemaRegistryTombstoneLeavesTargetUntouched(t *testing.T) {
	url := mockURL(t)
	for _, ft := range []Type{AvroSchemaRegistry, ProtoSchemaRegistry, JSONSchemaRegistry} {
		t.Run(string(ft), func(t *testing.T) {
			f := mustFormatter(t, ft, Registry{URL: url})
			target := wrapperspb.String("keep")
			require.NoError(t, f.Decode("t", nil, target))
			require.Equal(t, "keep", target.GetValue())
		})
	}
}

func TestSchemaRegistryFormattersConcurrentUse(t *testing.T) {
	url := mockURL(t)
	avroF := mustFormatter(t, AvroSchemaRegistry, Registry{URL: url, AutoRegister: true, WriterSchema: personV2Schema, ReaderSchema: personV1Schema})
	protoF := mustFormatter(t, ProtoSchemaRegistry, Registry{URL: url, AutoRegister: true})
	jsonF := mustFormatter(t, JSONSchemaRegistry, Registry{URL: url, AutoRegister: true, WriterSchema: personJSONSchema})
	var wg sync.WaitGroup
	for i := range 16 {
		topic := []string{"c1", "c2", "c3", "c4"}[i%4]
		wg.Go(func() {
			for range 20 {
				b, err := avroF.Encode(topic+"-avro", personV2{Name: topic, Age: i, Email: "e"})
				if !assertNoError(t, err) {
					return
				}
				var p personV1
				if !assertNoError(t, avroF.Decode(topic+"-avro", b, &p)) || p.Name != topic || p.Age != i {
					t.Errorf("avro: got %+v", p)
					return
				}
				b, err = protoF.Encode(topic+"-proto", wrapperspb.String(topic))
				if !assertNoError(t, err) {
					return
				}
				var s wrapperspb.StringValue
				if !assertNoError(t, protoF.Decode(topic+"-proto", b, &s)) || s.GetValue() != topic {
					t.Errorf("proto: got %v", &s)
					return
				}
				b, err = jsonF.Encode(topic+"-json", personV1{Name: topic, Age: i})
				if !assertNoError(t, err) {
					return
				}
				var j personV1
				if !assertNoError(t, jsonF.Decode(topic+"-json", b, &j)) || j.Name != topic {
					t.Errorf("json: got %+v", j)
					return
				}
			}
		})
	}
	wg.Wait()
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

// TestAvroSchemaRegistryAutoRegisterNeedsSchema: as in zkafka v2, an auto-registering avro
// writer needs the schema; one reflected from the Go type would lose the fields' defaults.
func TestAvroSchemaRegistryAutoRegisterNeedsSchema(t *testing.T) {
	w := mustFormatter(t, AvroSchemaRegistry, Registry{URL: mockURL(t), AutoRegister: true})
	_, err := w.Encode("t", personV1{Name: "a"})
	require.ErrorContains(t, err, "avro schema is required for schema registry formatter")
}

// TestSchemaRegistryIgnoresAnAvroSchemaForProtobufAndJSON: zkafka v2 configurations carry
// their avro schema in Serialization.Schema whatever the format; v2 uses it for avro only, and
// so do the protobuf and JSON formatters here (a schema of their own kind is still used).
func TestSchemaRegistryIgnoresAnAvroSchemaForProtobufAndJSON(t *testing.T) {
	require.Empty(t, withoutAvroSchema(Registry{WriterSchema: personV1Schema}).WriterSchema)
	require.Equal(t, personJSONSchema, withoutAvroSchema(Registry{WriterSchema: personJSONSchema}).WriterSchema)
	require.Equal(t, "syntax = \"proto3\";", withoutAvroSchema(Registry{WriterSchema: "syntax = \"proto3\";"}).WriterSchema)

	url := mockURL(t)
	sr := Registry{URL: url, SubjectName: "v2-json", AutoRegister: true, WriterSchema: personV1Schema}
	j := mustFormatter(t, JSONSchemaRegistry, sr)
	b, err := j.Encode("t", &personV1{Name: "v", Age: 2})
	require.NoError(t, err)
	var got personV1
	require.NoError(t, j.Decode("t", b, &got))
	require.Equal(t, personV1{Name: "v", Age: 2}, got)

	sr.SubjectName = "v2-proto"
	p := mustFormatter(t, ProtoSchemaRegistry, sr)
	b, err = p.Encode("t", wrapperspb.String("v"))
	require.NoError(t, err)
	s := &wrapperspb.StringValue{}
	require.NoError(t, p.Decode("t", b, s))
	require.Equal(t, "v", s.GetValue())
}
