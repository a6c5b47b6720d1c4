package zkafka

// The protobuf formatters without a registry: proto_raw (binary), proto_base64 and proto_json.

import (
	"encoding/base64"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// protoRawFormatter is ProtoRawFmt: the protobuf wire format of a proto.Message.
type protoRawFormatter struct{}

// protoBase64Formatter is ProtoBase64Fmt: ProtoRawFmt encoded with standard base64.
type protoBase64Formatter struct{}

// protoJSONFormatter is ProtoJSONFmt: protojson of a proto.Message.
type protoJSONFormatter struct{}

func (protoRawFormatter) marshall(req marshReq) ([]byte, error) {
	return protoEncode(string(ProtoRawFmt), req.subject, proto.Marshal)
}

func (protoRawFormatter) unmarshal(req unmarshReq) error {
	return protoDecode(string(ProtoRawFmt), req.data, req.target, proto.Unmarshal)
}

func (protoBase64Formatter) marshall(req marshReq) ([]byte, error) {
	raw, err := protoEncode(string(ProtoBase64Fmt), req.subject, proto.Marshal)
	if err != nil {
		return nil, err
	}
	out := make([]byte, base64.StdEncoding.EncodedLen(len(raw)))
	base64.StdEncoding.Encode(out, raw)
	return out, nil
}

func (protoBase64Formatter) unmarshal(req unmarshReq) error {
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(req.data)))
	n, err := base64.StdEncoding.Decode(raw, req.data)
	if err != nil {
		return fmt.Errorf("zkafka: proto_base64 formatter: payload is not standard base64: %w", err)
	}
	return protoDecode(string(ProtoBase64Fmt), raw[:n], req.target, proto.Unmarshal)
}

func (protoJSONFormatter) marshall(req marshReq) ([]byte, error) {
	return protoEncode(string(ProtoJSONFmt), req.subject, protojson.Marshal)
}

func (protoJSONFormatter) unmarshal(req unmarshReq) error {
	return protoDecode(string(ProtoJSONFmt), req.data, req.target, protojson.Unmarshal)
}

// protoEncode checks that v is a proto.Message and encodes it with enc.
func protoEncode(name string, v any, enc func(proto.Message) ([]byte, error)) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("zkafka: %s formatter cannot encode %T: it is not a proto.Message", name, v)
	}
	var out []byte
	err := guard(name, "encoding", func() error {
		b, err := enc(m)
		if err != nil {
			return fmt.Errorf("zkafka: %s formatter: encoding %T: %w", name, v, err)
		}
		out = b
		return nil
	})
	return out, err
}

// protoDecode checks that target is a usable proto.Message and decodes data into it with dec.
func protoDecode(name string, data []byte, target any, dec func([]byte, proto.Message) error) error {
	m, ok := target.(proto.Message)
	if !ok {
		return fmt.Errorf("zkafka: %s formatter cannot decode into %T: it is not a proto.Message", name, target)
	}
	return guard(name, "decoding", func() error {
		if !m.ProtoReflect().IsValid() {
			return fmt.Errorf("zkafka: %s formatter cannot decode into a nil %T", name, target)
		}
		if err := dec(data, m); err != nil {
			return fmt.Errorf("zkafka: %s formatter: decoding into %T: %w", name, target, err)
		}
		return nil
	})
}
