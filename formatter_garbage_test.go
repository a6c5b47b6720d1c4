package zkafka

import (
	"encoding/base64"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// G12: bad payloads are an error of that message, never a panic.

// richAvroSchema exercises most avro decoders (arrays, maps, unions, enums, fixed, bytes).
const richAvroSchema = `{"type":"record","name":"Rich","namespace":"zkafka.test","fields":[
	{"name":"s","type":"string"},
	{"name":"l","type":"long"},
	{"name":"d","type":"double"},
	{"name":"b","type":"bytes"},
	{"name":"arr","type":{"type":"array","items":"string"}},
	{"name":"m","type":{"type":"map","values":"long"}},
	{"name":"u","type":["null","string","int"]},
	{"name":"e","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}},
	{"name":"f","type":{"type":"fixed","name":"Four","size":4}},
	{"name":"nested","type":{"type":"array","items":{"type":"record","name":"Leaf","fields":[{"name":"v","type":"int"}]}}}]}`

// decodeCase is one formatter under test with a fresh decode target for each call.
type decodeCase struct {
	name   string
	f      kFormatter
	target func() any
	// valid are payloads this formatter writes, used as fuzz seeds.
	valid [][]byte
}

const fuzzTopic = "fuzz"

var (
	decodeCasesOnce sync.Once
	decodeCasesVal  []decodeCase
	decodeCasesErr  error
)

// decodeCases builds one of every formatter (shared by the garbage test and the fuzz test,
// on one mock registry where the schema registry formatters' schemas are registered) and a
// valid payload of each.
func decodeCases(t testing.TB) []decodeCase {
	t.Helper()
	decodeCasesOnce.Do(func() { decodeCasesVal, decodeCasesErr = buildDecodeCases() })
	require.NoError(t, decodeCasesErr)
	return decodeCasesVal
}

func buildDecodeCases() ([]decodeCase, error) {
	const url = "mock://zkafka-decode-cases"
	type spec struct {
		name   string
		ft     FormatterType
		sr     SchemaRegistryConfig
		target func() any
		value  any
	}
	rich := map[string]any{
		"s": "x", "l": int64(1), "d": 1.5, "b": []byte{1}, "arr": []any{"a", "b"},
		"m": map[string]any{"k": int64(2)}, "u": map[string]any{"string": "y"}, "e": "GREEN",
		"f": [4]byte{1, 2, 3, 4}, "nested": []any{map[string]any{"v": 3}},
	}
	specs := []spec{
		{name: "json", ft: JSONFmt, target: func() any { return new(any) }, value: map[string]any{"a": []any{1.0, "b"}}},
		{name: "json struct", ft: JSONFmt, target: func() any { return &personV1{} }, value: personV1{Name: "n", Age: 1}},
		{name: "string", ft: StringFmt, target: func() any { return new(string) }, value: "text"},
		{name: "proto_raw", ft: ProtoRawFmt, target: func() any { return &structpb.Struct{} }, value: mustStructNoT(map[string]any{"a": []any{1.0, "x", true, nil}})},
		{name: "proto_base64", ft: ProtoBase64Fmt, target: func() any { return &structpb.Struct{} }, value: mustStructNoT(map[string]any{"k": "v"})},
		{name: "proto_json", ft: ProtoJSONFmt, target: func() any { return &structpb.Struct{} }, value: mustStructNoT(map[string]any{"k": map[string]any{"n": 2.0}})},
		{name: "avro", ft: AvroFmt, sr: SchemaRegistryConfig{Serialization: SerializationConfig{Schema: personV2Schema}, Deserialization: DeserializationConfig{Schema: personV1Schema}}, target: func() any { return &personV1{} }, value: personV2{Name: "n", Age: 1, Email: "e"}},
		{name: "avro rich", ft: AvroFmt, sr: SchemaRegistryConfig{Serialization: SerializationConfig{Schema: richAvroSchema}}, target: func() any { return new(any) }, value: rich},
		{name: "avro_schema_registry", ft: AvroSchemaRegistry, sr: SchemaRegistryConfig{URL: url, SubjectName: "avro", Serialization: SerializationConfig{AutoRegisterSchemas: true, Schema: personV2Schema}, Deserialization: DeserializationConfig{Schema: personV1Schema}}, target: func() any { return &personV1{} }, value: personV2{Name: "n", Age: 1, Email: "e"}},
		{name: "avro_schema_registry rich", ft: AvroSchemaRegistry, sr: SchemaRegistryConfig{URL: url, SubjectName: "rich", Serialization: SerializationConfig{AutoRegisterSchemas: true, Schema: richAvroSchema}}, target: func() any { return new(any) }, value: rich},
		{name: "proto_schema_registry", ft: ProtoSchemaRegistry, sr: SchemaRegistryConfig{URL: url, SubjectName: "proto", Serialization: SerializationConfig{AutoRegisterSchemas: true}}, target: func() any { return &wrapperspb.StringValue{} }, value: wrapperspb.String("v")},
		{name: "proto_schema_registry struct", ft: ProtoSchemaRegistry, sr: SchemaRegistryConfig{URL: url, SubjectName: "struct", Serialization: SerializationConfig{AutoRegisterSchemas: true}}, target: func() any { return &structpb.Struct{} }, value: mustStructNoT(map[string]any{"k": []any{"v", 1.0}})},
		{name: "json_schema_registry", ft: JSONSchemaRegistry, sr: SchemaRegistryConfig{URL: url, SubjectName: "json", Serialization: SerializationConfig{AutoRegisterSchemas: true, Schema: personJSONSchema}}, target: func() any { return &personV1{} }, value: personV1{Name: "n", Age: 2}},
	}
	out := make([]decodeCase, 0, len(specs))
	for _, s := range specs {
		f, err := getFormatter(s.ft, 0, s.sr)
		if err != nil {
			return nil, err
		}
		b, err := f.marshall(marshReq{topic: fuzzTopic, subject: s.value})
		if err != nil {
			return nil, err
		}
		out = append(out, decodeCase{name: s.name, f: f, target: s.target, valid: [][]byte{b}})
	}
	return out, nil
}

func mustStructNoT(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}

func TestDecodeGarbageReturnsErrors(t *testing.T) {
	// Payloads no formatter except string may accept.
	garbage := map[string][]byte{
		"truncated varint":       {0xff, 0xff, 0xff},
		"magic 0 too short":      {0x00, 0x00, 0x01},
		"magic 1 too short":      {0x01, 0x02},
		"unknown schema id":      {0x00, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x02},
		"unknown magic":          {0x05, 0x00, 0x00, 0x00, 0x01, 0x00},
		"huge length prefix":     {0x00, 0x00, 0x00, 0x00, 0x01, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"not base64 nor json {":  []byte("{{{{!"),
		"invalid utf8 and bytes": {0xc3, 0x28, 0xa0, 0xa1, 0x00, 0xff},
	}
	for _, c := range decodeCases(t) {
		for name, payload := range garbage {
			t.Run(c.name+"/"+name, func(t *testing.T) {
				var err error
				require.NotPanics(t, func() { err = c.f.unmarshal(unmarshReq{topic: fuzzTopic, data: payload, target: c.target()}) })
				if c.name == "string" {
					require.NoError(t, err, "any bytes are a string")
					return
				}
				require.Error(t, err)
			})
		}
	}
}

func TestDecodeRejectsUnusableTargets(t *testing.T) {
	for _, c := range decodeCases(t) {
		for _, target := range []any{nil, 42, personV1{}, (*wrapperspb.StringValue)(nil), (*personV1)(nil)} {
			require.NotPanics(t, func() {
				_ = c.f.unmarshal(unmarshReq{topic: fuzzTopic, data: c.valid[0], target: target})
			}, "%s into %T", c.name, target)
		}
	}
	// Spot-check the messages for the simple formatters.
	err := stringFormatter{}.unmarshal(unmarshReq{data: []byte("x"), target: new(int)})
	require.EqualError(t, err, "zkafka: string formatter cannot decode into *int: use a *string or *[]byte")
	err = protoRawFormatter{}.unmarshal(unmarshReq{data: []byte{}, target: &personV1{}})
	require.EqualError(t, err, "zkafka: proto_raw formatter cannot decode into *zkafka.personV1: it is not a proto.Message")
	err = protoRawFormatter{}.unmarshal(unmarshReq{data: []byte{}, target: (*wrapperspb.StringValue)(nil)})
	require.ErrorContains(t, err, "cannot decode into a nil *wrapperspb.StringValue")
	_, err = protoJSONFormatter{}.marshall(marshReq{subject: "x"})
	require.EqualError(t, err, "zkafka: proto_json formatter cannot encode string: it is not a proto.Message")
	_, err = stringFormatter{}.marshall(marshReq{subject: 3})
	require.EqualError(t, err, "zkafka: string formatter cannot encode int: use a string, []byte, *string or *[]byte")
	err = protoBase64Formatter{}.unmarshal(unmarshReq{data: []byte("!!"), target: &wrapperspb.StringValue{}})
	require.ErrorContains(t, err, "payload is not standard base64")
}

func TestEncodeBadValuesReturnsErrors(t *testing.T) {
	bad := []any{nil, make(chan int), func() {}, (*personV1)(nil), 42, map[int]int{1: 1}}
	for _, c := range decodeCases(t) {
		for _, v := range bad {
			require.NotPanics(t, func() {
				_, _ = c.f.marshall(marshReq{topic: fuzzTopic, subject: v})
			}, "%s encoding %T", c.name, v)
		}
	}
	_, err := jsonFormatter{}.marshall(marshReq{subject: make(chan int)})
	require.ErrorContains(t, err, "zkafka: json formatter: encoding chan int")
}

func TestStringFormatterPointers(t *testing.T) {
	s, bs := "p", []byte("q")
	for in, want := range map[any]string{&s: "p", &bs: "q", (*string)(nil): "", (*[]byte)(nil): ""} {
		b, err := stringFormatter{}.marshall(marshReq{subject: in})
		require.NoError(t, err)
		require.Equal(t, want, string(b))
	}
	var got []byte
	require.NoError(t, stringFormatter{}.unmarshal(unmarshReq{data: nil, target: &got}))
	require.Nil(t, got)
}

func TestProtoBase64IsStandardBase64(t *testing.T) {
	b, err := protoBase64Formatter{}.marshall(marshReq{subject: wrapperspb.String("hi")})
	require.NoError(t, err)
	raw, err := base64.StdEncoding.DecodeString(string(b))
	require.NoError(t, err)
	raw2, err := protoRawFormatter{}.marshall(marshReq{subject: wrapperspb.String("hi")})
	require.NoError(t, err)
	require.Equal(t, raw2, raw)
}

// FuzzFormatterDecode feeds arbitrary bytes to every formatter: each call must return (an
// error or a value), never panic. Run it with
//
//	go test -run '^$' -fuzz FuzzFormatterDecode -fuzztime 20s .
func FuzzFormatterDecode(f *testing.F) {
	cases := decodeCases(f)
	for _, c := range cases {
		for _, v := range c.valid {
			f.Add(v)
		}
	}
	f.Add([]byte{})
	f.Add([]byte("null"))
	f.Add([]byte(`{"name":"x","age":1}`))
	f.Add([]byte{0x00, 0x00, 0x00, 0x00, 0x01})
	f.Add([]byte{0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x7f})
	f.Add([]byte{0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte("CgR0ZXN0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range cases {
			// A decode that spins or allocates without bound is as fatal as a panic; the
			// watchdog turns it into a reported failure with the input saved.
			done := make(chan any, 1)
			go func() {
				defer func() { done <- recover() }()
				_ = c.f.unmarshal(unmarshReq{topic: fuzzTopic, data: data, target: c.target()})
			}()
			select {
			case r := <-done:
				if r != nil {
					t.Fatalf("%s panicked decoding %x: %v", c.name, data, r)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s did not finish decoding %x within 5s", c.name, data)
			}
		}
	})
}

func TestDecodeCraftedCountsFailFast(t *testing.T) {
	// Payloads whose counts would make the libraries allocate or loop without bound (an
	// unrecoverable out-of-memory crash in confluent's protobuf deserializer and in hamba's
	// generic avro decoding).
	cases := decodeCases(t)
	byName := map[string]decodeCase{}
	for _, c := range cases {
		byName[c.name] = c
	}
	c, err := schemaRegistryClient("mock://zkafka-decode-cases")
	require.NoError(t, err)
	richMeta, err := c.GetLatestSchemaMetadata("rich")
	require.NoError(t, err)
	protoMeta, err := c.GetLatestSchemaMetadata("proto")
	require.NoError(t, err)

	// The rich record up to its array: "", 0, 0.0, empty bytes; then an array block count.
	richPrefix := append([]byte{0x00, 0x00}, make([]byte, 8)...)
	richPrefix = append(richPrefix, 0x00)
	hugeArray := binary.AppendVarint(append([]byte(nil), richPrefix...), 1<<40)
	negBlock := binary.AppendVarint(binary.AppendVarint(append([]byte(nil), richPrefix...), -(1<<40)), 1<<40)

	tests := []struct {
		formatter string
		payload   []byte
		wantErr   string
	}{
		{formatter: "avro rich", payload: hugeArray, wantErr: "does not fit"},
		{formatter: "avro rich", payload: negBlock, wantErr: "does not fit"},
		{formatter: "avro_schema_registry rich", payload: append(srHeader(richMeta.ID), hugeArray...), wantErr: "does not fit"},
		{formatter: "proto_schema_registry", payload: binary.AppendVarint(srHeader(protoMeta.ID), 1<<34), wantErr: "message indexes"},
		{formatter: "proto_schema_registry", payload: binary.AppendVarint(srHeader(protoMeta.ID), -1), wantErr: "message indexes"},
		{formatter: "proto_schema_registry", payload: append(binary.AppendVarint(srHeader(protoMeta.ID), 1), 0x7e), wantErr: "decoding failed"},
	}
	for _, tt := range tests {
		t.Run(tt.formatter, func(t *testing.T) {
			f := byName[tt.formatter]
			require.NotNil(t, f.f)
			err := f.f.unmarshal(unmarshReq{topic: fuzzTopic, data: tt.payload, target: f.target()})
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func srHeader(id int) []byte {
	return binary.BigEndian.AppendUint32([]byte{0x00}, uint32(id))
}

func TestCheckAvro(t *testing.T) {
	rich, err := parseAvroSchema(richAvroSchema)
	require.NoError(t, err)
	valid, err := avroAPI.Marshal(rich, map[string]any{
		"s": "x", "l": int64(1), "d": 1.5, "b": []byte{1}, "arr": []any{"a"},
		"m": map[string]any{"k": int64(2)}, "u": nil, "e": "RED",
		"f": [4]byte{}, "nested": []any{},
	})
	require.NoError(t, err)
	require.NoError(t, checkAvro(rich, valid))
	require.ErrorContains(t, checkAvro(rich, append(valid, 0)), "1 trailing bytes")
	for i := range valid {
		require.Error(t, checkAvro(rich, valid[:i]), "truncated at %d", i)
	}
	nulls, err := parseAvroSchema(`{"type":"array","items":"null"}`)
	require.NoError(t, err)
	require.NoError(t, checkAvro(nulls, binary.AppendVarint(binary.AppendVarint(nil, 10), 0)))
	require.ErrorContains(t, checkAvro(nulls, binary.AppendVarint(binary.AppendVarint(nil, 1<<20), 0)), "take no bytes")
	enum, err := parseAvroSchema(`{"type":"enum","name":"E","symbols":["A"]}`)
	require.NoError(t, err)
	require.ErrorContains(t, checkAvro(enum, []byte{0x02}), "enum index 1 is out of range")
	union, err := parseAvroSchema(`["null","int"]`)
	require.NoError(t, err)
	require.ErrorContains(t, checkAvro(union, []byte{0x04}), "union index 2 is out of range")
	str, err := parseAvroSchema(`"string"`)
	require.NoError(t, err)
	require.ErrorContains(t, checkAvro(str, []byte{0x01}), "length -1")
	require.ErrorContains(t, checkAvro(str, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), "overflows")
}
