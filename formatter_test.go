package zkafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/zillow/zfmt"
	"github.com/zkafka-go/zkafka/internal/format/formattest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The formatters through the root API: getFormatter, Writer encoding, Message.Decode and
// configuration errors. internal/format tests the formatters alone.

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

func ptr[T any](v T) *T { return &v }

func mustStruct(t testing.TB, m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	require.NoError(t, err)
	return s
}

// formatterCase is one configured formatter with a payload it wrote and a fresh decode target.
type formatterCase struct {
	name   string
	ft     FormatterType
	sr     SchemaRegistryConfig
	target func() any
	value  any
	valid  []byte
}

var (
	formatterCasesOnce sync.Once
	formatterCasesVal  []formatterCase
	formatterCasesErr  error
)

// formatterCases builds one case of every formatter a config may name, on one mock registry,
// each with a payload it encoded through getFormatter.
func formatterCases(t testing.TB) []formatterCase {
	t.Helper()
	formatterCasesOnce.Do(func() {
		const url = "mock://zkafka-formatter-cases"
		cases := []formatterCase{
			{name: "json", ft: JSONFmt, target: func() any { return &personV1{} }, value: personV1{Name: "n", Age: 1}},
			{name: "string", ft: StringFmt, target: func() any { return new(string) }, value: "text"},
			{name: "proto_raw", ft: ProtoRawFmt, target: func() any { return &wrapperspb.StringValue{} }, value: wrapperspb.String("v")},
			{name: "proto_base64", ft: ProtoBase64Fmt, target: func() any { return &wrapperspb.StringValue{} }, value: wrapperspb.String("v")},
			{name: "proto_json", ft: ProtoJSONFmt, target: func() any { return &wrapperspb.StringValue{} }, value: wrapperspb.String("v")},
			{name: "avro", ft: AvroFmt, sr: SchemaRegistryConfig{Serialization: SerializationConfig{Schema: personV2Schema}, Deserialization: DeserializationConfig{Schema: personV1Schema}}, target: func() any { return &personV1{} }, value: personV2{Name: "n", Age: 1, Email: "e"}},
			{name: "avro_schema_registry", ft: AvroSchemaRegistry, sr: SchemaRegistryConfig{URL: url, SubjectName: "avro", Serialization: SerializationConfig{AutoRegisterSchemas: true, Schema: personV2Schema}, Deserialization: DeserializationConfig{Schema: personV1Schema}}, target: func() any { return &personV1{} }, value: personV2{Name: "n", Age: 1, Email: "e"}},
			{name: "proto_schema_registry", ft: ProtoSchemaRegistry, sr: SchemaRegistryConfig{URL: url, SubjectName: "proto", Serialization: SerializationConfig{AutoRegisterSchemas: true}}, target: func() any { return &wrapperspb.StringValue{} }, value: wrapperspb.String("v")},
			{name: "json_schema_registry", ft: JSONSchemaRegistry, sr: SchemaRegistryConfig{URL: url, SubjectName: "json", Serialization: SerializationConfig{AutoRegisterSchemas: true, Schema: personJSONSchema}}, target: func() any { return &personV1{} }, value: personV1{Name: "n", Age: 2}},
		}
		for i, c := range cases {
			f, err := getFormatter(c.ft, 0, c.sr)
			if err != nil {
				formatterCasesErr = err
				return
			}
			if cases[i].valid, err = f.Encode("formatter-cases", c.value); err != nil {
				formatterCasesErr = err
				return
			}
		}
		formatterCasesVal = cases
	})
	require.NoError(t, formatterCasesErr)
	return formatterCasesVal
}

// message is a Message of topic with payload, decoded with c's formatter.
func (c formatterCase) message(t testing.TB, payload []byte) *Message {
	t.Helper()
	f, err := getFormatter(c.ft, 0, c.sr)
	require.NoError(t, err)
	return &Message{Topic: "formatter-cases", value: payload, fmt: f}
}

// requirePrefixOnce checks that err, an error that reaches a user, starts with "zkafka: " and
// carries it only once.
func requirePrefixOnce(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.True(t, strings.HasPrefix(err.Error(), "zkafka: "), "no prefix: %v", err)
	require.Equal(t, 1, strings.Count(err.Error(), "zkafka: "), "prefix repeated: %v", err)
}

// TestFormatterErrorsStartWithThePrefixOnce: an encoding failure from Write, a decoding failure
// from Message.Decode and a bad formatter configuration from Client.Writer and Client.Reader
// each start with "zkafka: " exactly once.
func TestFormatterErrorsStartWithThePrefixOnce(t *testing.T) {
	ctx := context.Background()
	fp := newFakeProducerFactory()
	c := NewClient(Config{BootstrapServers: []string{"b:1"}}, WithProducerProvider(fp.provider))
	defer func() { require.NoError(t, c.Close()) }()

	for _, fc := range formatterCases(t) {
		t.Run(fc.name+"/encode", func(t *testing.T) {
			w, err := c.Writer(ctx, ProducerTopicConfig{ClientID: "prefix-" + fc.name, Topic: "prefix", Formatter: fc.ft, SchemaRegistry: fc.sr})
			require.NoError(t, err)
			_, err = w.Write(ctx, make(chan int))
			requirePrefixOnce(t, err)
			require.Contains(t, err.Error(), "zkafka: encoding a chan int for topic prefix: ")
		})
		if fc.name == "string" { // any bytes are a string
			continue
		}
		t.Run(fc.name+"/decode", func(t *testing.T) {
			err := fc.message(t, []byte{0x00, 0xff, 0xfe, 0x01, 0x02}).Decode(fc.target())
			requirePrefixOnce(t, err)
		})
	}
	t.Run("a user formatter's error", func(t *testing.T) {
		m := GetFakeMessage("k", "v", &zfmt.JSONFormatter{}, nil)
		requirePrefixOnce(t, m.Decode(make(chan int)))
	})

	configs := map[string]struct {
		ft FormatterType
		sr SchemaRegistryConfig
	}{
		"unknown name":                    {ft: "xml"},
		"registry without URL":            {ft: AvroSchemaRegistry},
		"avro without a valid schema":     {ft: AvroFmt, sr: SchemaRegistryConfig{Serialization: SerializationConfig{Schema: "{"}}},
		"registry with an invalid schema": {ft: AvroSchemaRegistry, sr: SchemaRegistryConfig{URL: "mock://prefix", Deserialization: DeserializationConfig{Schema: "{"}}},
	}
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			_, err := c.Writer(ctx, ProducerTopicConfig{ClientID: "prefix-config", Topic: "prefix", Formatter: cfg.ft, SchemaRegistry: cfg.sr})
			requirePrefixOnce(t, err)
			require.True(t, IsConfigError(err), "%v", err)
			_, err = c.Reader(ctx, ConsumerTopicConfig{ClientID: "prefix-config", GroupID: "g", Topic: "prefix", Formatter: cfg.ft, SchemaRegistry: cfg.sr})
			requirePrefixOnce(t, err)
			require.True(t, IsConfigError(err), "%v", err)
		})
	}
}

// TestGetFormatterConfigErrors: every configuration getFormatter refuses is a configuration
// error, with the "zkafka: " prefix once, whatever internal/format reports it as.
func TestGetFormatterConfigErrors(t *testing.T) {
	tests := map[string]struct {
		ft      FormatterType
		sr      SchemaRegistryConfig
		wantErr string
	}{
		"unknown name":               {ft: "xml", wantErr: `zkafka: formatter "xml" is not a known formatter (one of json, string`},
		"deprecated proto_schema":    {ft: zfmt.ProtoSchemaDeprecatedFmt, wantErr: `use "proto_schema_registry" (ProtoSchemaRegistry)`},
		"registry without URL":       {ft: JSONSchemaRegistry, sr: SchemaRegistryConfig{URL: " "}, wantErr: `zkafka: formatter "json_schema_registry" needs SchemaRegistry.URL`},
		"avro with no usable schema": {ft: AvroFmt, sr: SchemaRegistryConfig{Deserialization: DeserializationConfig{Schema: "not json"}}, wantErr: "zkafka: SchemaRegistry.Deserialization.Schema is not a valid avro schema"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			f, err := getFormatter(tt.ft, 0, tt.sr)
			require.Nil(t, f)
			requirePrefixOnce(t, err)
			require.ErrorContains(t, err, tt.wantErr)
			require.True(t, IsConfigError(err))
			require.True(t, IsConfigError(fmt.Errorf("starting: %w", err)), "through wrapping")
		})
	}
	require.False(t, IsConfigError(errors.New("formatter \"xml\" is not a known formatter")))
	f, err := getFormatter(CustomFmt, 0, SchemaRegistryConfig{})
	require.NoError(t, err)
	require.Nil(t, f, "a custom formatter is supplied by an option")
}

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
