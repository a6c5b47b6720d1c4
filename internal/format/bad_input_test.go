package format

import (
	"encoding/base64"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/zillow/zfmt"
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
	f      Formatter
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
		ft     Type
		sr     Registry
		target func() any
		value  any
	}
	rich := map[string]any{
		"s": "x", "l": int64(1), "d": 1.5, "b": []byte{1}, "arr": []any{"a", "b"},
		"m": map[string]any{"k": int64(2)}, "u": map[string]any{"string": "y"}, "e": "GREEN",
		"f": [4]byte{1, 2, 3, 4}, "nested": []any{map[string]any{"v": 3}},
	}
	specs := []spec{
		{name: "json", ft: zfmt.JSONFmt, target: func() any { return new(any) }, value: map[string]any{"a": []any{1.0, "b"}}},
		{name: "json struct", ft: zfmt.JSONFmt, target: func() any { return &personV1{} }, value: personV1{Name: "n", Age: 1}},
		{name: "string", ft: zfmt.StringFmt, target: func() any { return new(string) }, value: "text"},
		{name: "proto_raw", ft: zfmt.ProtoRawFmt, target: func() any { return &structpb.Struct{} }, value: mustStructNoT(map[string]any{"a": []any{1.0, "x", true, nil}})},
		{name: "proto_base64", ft: zfmt.ProtoBase64Fmt, target: func() any { return &structpb.Struct{} }, value: mustStructNoT(map[string]any{"k": "v"})},
		{name: "proto_json", ft: zfmt.ProtoJSONFmt, target: func() any { return &structpb.Struct{} }, value: mustStructNoT(map[string]any{"k": map[string]any{"n": 2.0}})},
		{name: "avro", ft: zfmt.AvroFmt, sr: Registry{WriterSchema: personV2Schema, ReaderSchema: personV1Schema}, target: func() any { return &personV1{} }, value: personV2{Name: "n", Age: 1, Email: "e"}},
		{name: "avro rich", ft: zfmt.AvroFmt, sr: Registry{WriterSchema: richAvroSchema}, target: func() any { return new(any) }, value: rich},
		{name: "avro_schema_registry", ft: AvroSchemaRegistry, sr: Registry{URL: url, SubjectName: "avro", AutoRegister: true, WriterSchema: personV2Schema, ReaderSchema: personV1Schema}, target: func() any { return &personV1{} }, value: personV2{Name: "n", Age: 1, Email: "e"}},
		{name: "avro_schema_registry rich", ft: AvroSchemaRegistry, sr: Registry{URL: url, SubjectName: "rich", AutoRegister: true, WriterSchema: richAvroSchema}, target: func() any { return new(any) }, value: rich},
		{name: "proto_schema_registry", ft: ProtoSchemaRegistry, sr: Registry{URL: url, SubjectName: "proto", AutoRegister: true}, target: func() any { return &wrapperspb.StringValue{} }, value: wrapperspb.String("v")},
		{name: "proto_schema_registry struct", ft: ProtoSchemaRegistry, sr: Registry{URL: url, SubjectName: "struct", AutoRegister: true}, target: func() any { return &structpb.Struct{} }, value: mustStructNoT(map[string]any{"k": []any{"v", 1.0}})},
		{name: "json_schema_registry", ft: JSONSchemaRegistry, sr: Registry{URL: url, SubjectName: "json", AutoRegister: true, WriterSchema: personJSONSchema}, target: func() any { return &personV1{} }, value: personV1{Name: "n", Age: 2}},
	}
	out := make([]decodeCase, 0, len(specs))
	for _, s := range specs {
		f, err := New(s.ft, 0, s.sr)
		if err != nil {
			return nil, err
		}
		b, err := f.Encode(fuzzTopic, s.value)
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
				require.NotPanics(t, func() { err = c.f.Decode(fuzzTopic, payload, c.target()) })
				if c.name == "string" {
					require.NoError(t, err, "any bytes are a string")
					return
				}
				require.Error(t, err)
				require.NotContains(t, err.Error(), "zkafka: ", "the root package adds the prefix")
			})
		}
	}
}

func TestDecodeRejectsUnusableTargets(t *testing.T) {
	for _, c := range decodeCases(t) {
		for _, target := range []any{nil, 42, personV1{}, (*wrapperspb.StringValue)(nil), (*personV1)(nil)} {
			require.NotPanics(t, func() {
				_ = c.f.Decode(fuzzTopic, c.valid[0], target)
			}, "%s into %T", c.name, target)
		}
	}
	// Spot-check the messages for the simple formatters.
	err := stringFormatter{}.Decode("", []byte("x"), new(int))
	require.EqualError(t, err, "string formatter cannot decode into *int: use a *string or *[]byte")
	err = protoRawFormatter{}.Decode("", []byte{}, &personV1{})
	require.EqualError(t, err, "proto_raw formatter cannot decode into *formattest.PersonV1: it is not a proto.Message")
	err = protoRawFormatter{}.Decode("", []byte{}, (*wrapperspb.StringValue)(nil))
	require.ErrorContains(t, err, "cannot decode into a nil *wrapperspb.StringValue")
	_, err = protoJSONFormatter{}.Encode("", "x")
	require.EqualError(t, err, "proto_json formatter cannot encode string: it is not a proto.Message")
	_, err = stringFormatter{}.Encode("", 3)
	require.EqualError(t, err, "string formatter cannot encode int: use a string, []byte, *string or *[]byte")
	err = protoBase64Formatter{}.Decode("", []byte("!!"), &wrapperspb.StringValue{})
	require.ErrorContains(t, err, "payload is not standard base64")
}

func TestEncodeBadValuesReturnsErrors(t *testing.T) {
	bad := []any{nil, make(chan int), func() {}, (*personV1)(nil), 42, map[int]int{1: 1}}
	for _, c := range decodeCases(t) {
		for _, v := range bad {
			require.NotPanics(t, func() {
				_, _ = c.f.Encode(fuzzTopic, v)
			}, "%s encoding %T", c.name, v)
		}
	}
	_, err := jsonFormatter{}.Encode("", make(chan int))
	require.ErrorContains(t, err, "json formatter: encoding chan int")
}

func TestStringFormatterPointers(t *testing.T) {
	s, bs := "p", []byte("q")
	for in, want := range map[any]string{&s: "p", &bs: "q", (*string)(nil): "", (*[]byte)(nil): ""} {
		b, err := stringFormatter{}.Encode("", in)
		require.NoError(t, err)
		require.Equal(t, want, string(b))
	}
	var got []byte
	require.NoError(t, stringFormatter{}.Decode("", nil, &got))
	require.Nil(t, got)
}

func TestProtoBase64IsStandardBase64(t *testing.T) {
	b, err := protoBase64Formatter{}.Encode("", wrapperspb.String("hi"))
	require.NoError(t, err)
	raw, err := base64.StdEncoding.DecodeString(string(b))
	require.NoError(t, err)
	raw2, err := protoRawFormatter{}.Encode("", wrapperspb.String("hi"))
	require.NoError(t, err)
	require.Equal(t, raw2, raw)
}

// FuzzFormatterDecode feeds arbitrary bytes to every formatter: each call must return (an
// error or a value), never panic. Run it with
//
//	go test -run '^$' -fuzz FuzzFormatterDecode -fuzztime 20s ./internal/format
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
				_ = c.f.Decode(fuzzTopic, data, c.target())
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
			err := f.f.Decode(fuzzTopic, tt.payload, f.target())
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func srHeader(id int) []byte {
	return binary.BigEndian.AppendUint32([]byte{0x00}, uint32(id))
}
