package zkafka

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestFormattersRoundTripThroughTheBroker writes a value with a Writer and reads it back with
// a Reader for every formatter, on the broker the suite runs on (schema registries on mock://).
func TestFormattersRoundTripThroughTheBroker(t *testing.T) {
	e := newEnv(t)
	client := e.client(t)
	url := mockURL(t)
	tests := []struct {
		name   string
		ft     FormatterType
		wsr    SchemaRegistryConfig
		rsr    SchemaRegistryConfig
		in     any
		target func() any
		want   any
	}{
		{name: "json", ft: JSONFmt, in: personV1{Name: "ann", Age: 3}, target: func() any { return &personV1{} }, want: &personV1{Name: "ann", Age: 3}},
		{name: "string", ft: StringFmt, in: "héllo", target: func() any { return new(string) }, want: ptr("héllo")},
		{name: "proto_raw", ft: ProtoRawFmt, in: wrapperspb.String("x"), target: func() any { return &wrapperspb.StringValue{} }, want: wrapperspb.String("x")},
		{name: "proto_base64", ft: ProtoBase64Fmt, in: wrapperspb.Int64(-7), target: func() any { return &wrapperspb.Int64Value{} }, want: wrapperspb.Int64(-7)},
		{name: "proto_json", ft: ProtoJSONFmt, in: mustStruct(t, map[string]any{"k": "v"}), target: func() any { return &structpb.Struct{} }, want: mustStruct(t, map[string]any{"k": "v"})},
		{
			name: "avro, old reader schema reads newer data", ft: AvroFmt,
			wsr: SchemaRegistryConfig{Serialization: SerializationConfig{Schema: personV2Schema}},
			rsr: SchemaRegistryConfig{Serialization: SerializationConfig{Schema: personV2Schema}, Deserialization: DeserializationConfig{Schema: personV1Schema}},
			in:  personV2{Name: "bo", Age: 40, Email: "b@x"}, target: func() any { return &personV1{} }, want: &personV1{Name: "bo", Age: 40},
		},
		{
			name: "avro_schema_registry, old reader schema reads newer data", ft: AvroSchemaRegistry,
			wsr: SchemaRegistryConfig{URL: url, Serialization: SerializationConfig{AutoRegisterSchemas: true, Schema: personV2Schema}},
			rsr: SchemaRegistryConfig{URL: url, Deserialization: DeserializationConfig{Schema: personV1Schema}},
			in:  personV2{Name: "di", Age: 9, Email: "d@x"}, target: func() any { return &personV1{} }, want: &personV1{Name: "di", Age: 9},
		},
		{
			name: "proto_schema_registry", ft: ProtoSchemaRegistry,
			wsr: SchemaRegistryConfig{URL: url, Serialization: SerializationConfig{AutoRegisterSchemas: true}},
			rsr: SchemaRegistryConfig{URL: url},
			in:  wrapperspb.String("y"), target: func() any { return &wrapperspb.StringValue{} }, want: wrapperspb.String("y"),
		},
		{
			name: "json_schema_registry", ft: JSONSchemaRegistry,
			wsr: SchemaRegistryConfig{URL: url, Serialization: SerializationConfig{AutoRegisterSchemas: true, Schema: personJSONSchema}},
			rsr: SchemaRegistryConfig{URL: url},
			in:  personV1{Name: "fa", Age: 77}, target: func() any { return &personV1{} }, want: &personV1{Name: "fa", Age: 77},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			topic := e.newTopic(t, 1)
			w, err := client.Writer(ctx, ProducerTopicConfig{ClientID: uniqueTestName(t, "w"), Topic: topic, Formatter: tt.ft, SchemaRegistry: tt.wsr})
			require.NoError(t, err)
			resp, err := w.WriteKey(ctx, "key", tt.in, WithHeaders(map[string]string{"h": "v"}))
			require.NoError(t, err)
			require.Equal(t, int64(0), resp.Offset)

			r, err := client.Reader(ctx, ConsumerTopicConfig{ClientID: uniqueTestName(t, "r"), GroupID: uniqueTestName(t, "g"), Topic: topic, Formatter: tt.ft, SchemaRegistry: tt.rsr})
			require.NoError(t, err)
			defer func() { require.NoError(t, r.Close()) }()
			var msg *Message
			for msg == nil {
				msg, err = r.Read(ctx)
				require.NoError(t, err)
			}
			require.Equal(t, "key", msg.Key)
			require.Equal(t, map[string][]byte{"h": []byte("v")}, msg.Headers)
			got := tt.target()
			require.NoError(t, msg.Decode(got))
			if m, ok := tt.want.(proto.Message); ok {
				require.True(t, proto.Equal(m, got.(proto.Message)), "got %v, want %v", got, m)
			} else {
				require.Equal(t, tt.want, got)
			}
			msg.Done()
		})
	}
}
