package format

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/zillow/zfmt"
	"github.com/zkafka-go/zkafka/internal/format/formattest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The test schemas and types are formattest's: personV1 and personV2, their avro schemas,
// and personV1's JSON Schema.
const (
	personV1Schema   = formattest.PersonV1Schema
	personV2Schema   = formattest.PersonV2Schema
	personJSONSchema = formattest.PersonJSONSchema
)

type (
	personV1 = formattest.PersonV1
	personV2 = formattest.PersonV2
)

// mockURL returns a mock registry URL no other test uses.
var mockCounter atomic.Int64

func mockURL(t testing.TB) string {
	return fmt.Sprintf("mock://%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), mockCounter.Add(1))
}

func mustFormatter(t testing.TB, ft Type, sr Registry) Formatter {
	t.Helper()
	f, err := New(ft, 0, sr)
	require.NoError(t, err)
	require.NotNil(t, f)
	return f
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		ft      Type
		sr      Registry
		wantNil bool
		wantErr string
	}{
		{name: "empty means json", ft: ""},
		{name: "json", ft: zfmt.JSONFmt},
		{name: "string", ft: zfmt.StringFmt},
		{name: "proto_raw", ft: zfmt.ProtoRawFmt},
		{name: "proto_base64", ft: zfmt.ProtoBase64Fmt},
		{name: "proto_json", ft: zfmt.ProtoJSONFmt},
		{name: "avro with writer schema", ft: zfmt.AvroFmt, sr: Registry{WriterSchema: personV1Schema}},
		{name: "avro with reader schema", ft: zfmt.AvroFmt, sr: Registry{ReaderSchema: personV1Schema}},
		{name: "custom is supplied by options", ft: Custom, wantNil: true},
		{name: "avro_schema_registry", ft: AvroSchemaRegistry, sr: Registry{URL: "mock://get-formatter"}},
		{name: "proto_schema_registry", ft: ProtoSchemaRegistry, sr: Registry{URL: "mock://get-formatter"}},
		{name: "json_schema_registry", ft: JSONSchemaRegistry, sr: Registry{URL: "mock://get-formatter"}},
		{name: "real registry URL is not contacted at construction", ft: AvroSchemaRegistry, sr: Registry{URL: "http://127.0.0.1:1"}},
		{
			name:    "unknown",
			ft:      "xml",
			wantErr: `formatter "xml" is not a known formatter (one of json, string, proto_raw, proto_base64, proto_json, avro, custom, avro_schema_registry, proto_schema_registry, json_schema_registry, avro_schema, json_schema)`,
		},
		{name: "wrong case is unknown", ft: "JSON", wantErr: `formatter "JSON" is not a known formatter`},
		{name: "avro without schema is zfmt's, as in zkafka v2", ft: zfmt.AvroFmt},
		{name: "zfmt avro_schema", ft: zfmt.AvroSchemaFmt},
		{name: "zfmt json_schema", ft: zfmt.JSONSchemaFmt},
		{name: "zfmt proto_schema_deprecated names its replacement", ft: zfmt.ProtoSchemaDeprecatedFmt, wantErr: `use "proto_schema_registry" (ProtoSchemaRegistry)`},
		{name: "avro with invalid writer schema", ft: zfmt.AvroFmt, sr: Registry{WriterSchema: `{"type":"nope"}`}, wantErr: "SchemaRegistry.Serialization.Schema is not a valid avro schema"},
		{name: "avro with invalid reader schema", ft: zfmt.AvroFmt, sr: Registry{ReaderSchema: `not json`}, wantErr: "SchemaRegistry.Deserialization.Schema is not a valid avro schema"},
		{
			name: "avro with incompatible schemas",
			ft:   zfmt.AvroFmt,
			sr: Registry{
				WriterSchema: personV1Schema,
				ReaderSchema: `{"type":"record","name":"Person","namespace":"zkafka.test","fields":[{"name":"id","type":"long"}]}`,
			},
			wantErr: "SchemaRegistry.Deserialization.Schema cannot read data written with SchemaRegistry.Serialization.Schema",
		},
		{name: "avro_schema_registry without URL", ft: AvroSchemaRegistry, wantErr: `formatter "avro_schema_registry" needs SchemaRegistry.URL`},
		{name: "proto_schema_registry without URL", ft: ProtoSchemaRegistry, wantErr: `formatter "proto_schema_registry" needs SchemaRegistry.URL`},
		{name: "json_schema_registry blank URL", ft: JSONSchemaRegistry, sr: Registry{URL: "  "}, wantErr: `formatter "json_schema_registry" needs SchemaRegistry.URL`},
		{name: "avro_schema_registry invalid reader schema", ft: AvroSchemaRegistry, sr: Registry{URL: "mock://x", ReaderSchema: "{"}, wantErr: "SchemaRegistry.Deserialization.Schema is not a valid avro schema"},
		{name: "avro_schema_registry invalid writer schema", ft: AvroSchemaRegistry, sr: Registry{URL: "mock://x", WriterSchema: "{"}, wantErr: "SchemaRegistry.Serialization.Schema is not a valid avro schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := New(tt.ft, 0, tt.sr)
			if tt.wantErr != "" {
				require.Error(t, err)
				require.Contains(t, err.Error(), tt.wantErr)
				var ce *ConfigError
				require.ErrorAs(t, err, &ce, "a bad formatter config is a configuration error")
				require.Nil(t, f)
				return
			}
			require.NoError(t, err)
			if tt.wantNil {
				require.Nil(t, f)
				return
			}
			require.NotNil(t, f)
		})
	}
}

func TestFormatterRoundTrip(t *testing.T) {
	url := mockURL(t)
	avroSR := Registry{URL: url, AutoRegister: true, WriterSchema: personV1Schema}
	jsonSR := Registry{URL: url, AutoRegister: true, WriterSchema: personJSONSchema}
	protoSR := Registry{URL: url, AutoRegister: true}
	tests := []struct {
		name   string
		ft     Type
		sr     Registry
		in     any
		target func() any
		want   any
	}{
		{name: "json struct", ft: zfmt.JSONFmt, in: personV1{Name: "ann", Age: 3}, target: func() any { return &personV1{} }, want: &personV1{Name: "ann", Age: 3}},
		{name: "json map", ft: "", in: map[string]any{"a": "b"}, target: func() any { return &map[string]any{} }, want: &map[string]any{"a": "b"}},
		{name: "string", ft: zfmt.StringFmt, in: "héllo", target: func() any { return new(string) }, want: ptr("héllo")},
		{name: "string bytes", ft: zfmt.StringFmt, in: []byte{0, 1, 2}, target: func() any { return new([]byte) }, want: &[]byte{0, 1, 2}},
		{name: "string empty", ft: zfmt.StringFmt, in: "", target: func() any { return new(string) }, want: ptr("")},
		{name: "proto_raw", ft: zfmt.ProtoRawFmt, in: wrapperspb.String("x"), target: func() any { return &wrapperspb.StringValue{} }, want: wrapperspb.String("x")},
		{name: "proto_raw timestamp", ft: zfmt.ProtoRawFmt, in: &timestamppb.Timestamp{Seconds: 5, Nanos: 6}, target: func() any { return &timestamppb.Timestamp{} }, want: &timestamppb.Timestamp{Seconds: 5, Nanos: 6}},
		{name: "proto_base64", ft: zfmt.ProtoBase64Fmt, in: wrapperspb.Int64(-7), target: func() any { return &wrapperspb.Int64Value{} }, want: wrapperspb.Int64(-7)},
		{name: "proto_json", ft: zfmt.ProtoJSONFmt, in: mustStruct(t, map[string]any{"k": "v", "n": 1.5}), target: func() any { return &structpb.Struct{} }, want: mustStruct(t, map[string]any{"k": "v", "n": 1.5})},
		{name: "avro", ft: zfmt.AvroFmt, sr: Registry{WriterSchema: personV1Schema}, in: personV1{Name: "bo", Age: 40}, target: func() any { return &personV1{} }, want: &personV1{Name: "bo", Age: 40}},
		{name: "avro pointer", ft: zfmt.AvroFmt, sr: Registry{WriterSchema: personV1Schema}, in: &personV1{Name: "bo", Age: 40}, target: func() any { return &personV1{} }, want: &personV1{Name: "bo", Age: 40}},
		{name: "avro map", ft: zfmt.AvroFmt, sr: Registry{ReaderSchema: personV1Schema}, in: map[string]any{"name": "cy", "age": 1}, target: func() any { return &map[string]any{} }, want: &map[string]any{"name": "cy", "age": 1}},
		{name: "avro_schema_registry", ft: AvroSchemaRegistry, sr: avroSR, in: personV1{Name: "di", Age: 9}, target: func() any { return &personV1{} }, want: &personV1{Name: "di", Age: 9}},
		{name: "avro_schema_registry pointer", ft: AvroSchemaRegistry, sr: avroSR, in: &personV1{Name: "di", Age: 9}, target: func() any { return &personV1{} }, want: &personV1{Name: "di", Age: 9}},
		{name: "avro_schema_registry auto-registered schema", ft: AvroSchemaRegistry, sr: Registry{URL: url, SubjectName: "derived", AutoRegister: true, WriterSchema: personV1Schema}, in: &personV1{Name: "ed", Age: 2}, target: func() any { return &personV1{} }, want: &personV1{Name: "ed", Age: 2}},
		{name: "proto_schema_registry", ft: ProtoSchemaRegistry, sr: protoSR, in: wrapperspb.String("y"), target: func() any { return &wrapperspb.StringValue{} }, want: wrapperspb.String("y")},
		{name: "proto_schema_registry timestamp", ft: ProtoSchemaRegistry, sr: Registry{URL: url, SubjectName: "ts", AutoRegister: true}, in: &timestamppb.Timestamp{Seconds: 1700000000, Nanos: 1}, target: func() any { return &timestamppb.Timestamp{} }, want: &timestamppb.Timestamp{Seconds: 1700000000, Nanos: 1}},
		{name: "json_schema_registry", ft: JSONSchemaRegistry, sr: jsonSR, in: personV1{Name: "fa", Age: 77}, target: func() any { return &personV1{} }, want: &personV1{Name: "fa", Age: 77}},
		{name: "json_schema_registry reflected schema", ft: JSONSchemaRegistry, sr: Registry{URL: url, SubjectName: "reflected", AutoRegister: true}, in: &personV1{Name: "gu", Age: 5}, target: func() any { return &personV1{} }, want: &personV1{Name: "gu", Age: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := mustFormatter(t, tt.ft, tt.sr)
			b, err := w.Encode("round-trip", tt.in)
			require.NoError(t, err)
			// A separate formatter instance reads, as a consumer in the same process would.
			r := mustFormatter(t, tt.ft, tt.sr)
			got := tt.target()
			require.NoError(t, r.Decode("round-trip", b, got))
			if m, ok := tt.want.(proto.Message); ok {
				require.True(t, proto.Equal(m, got.(proto.Message)), "got %v, want %v", got, m)
				return
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func ptr[T any](v T) *T { return &v }

func mustStruct(t testing.TB, m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	require.NoError(t, err)
	return s
}
