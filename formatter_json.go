package zkafka

// The json formatter (the default): encoding/json.

import (
	"encoding/json"
	"fmt"
)

// jsonFormatter is JSONFmt: encoding/json both ways.
type jsonFormatter struct{}

func (jsonFormatter) marshall(req marshReq) ([]byte, error) {
	var out []byte
	err := guard("json", "encoding", func() error {
		b, err := json.Marshal(req.subject)
		if err != nil {
			return fmt.Errorf("zkafka: json formatter: encoding %T: %w", req.subject, err)
		}
		out = b
		return nil
	})
	return out, err
}

func (jsonFormatter) unmarshal(req unmarshReq) error {
	return guard("json", "decoding", func() error {
		if err := json.Unmarshal(req.data, req.target); err != nil {
			return fmt.Errorf("zkafka: json formatter: decoding into %T: %w", req.target, err)
		}
		return nil
	})
}
