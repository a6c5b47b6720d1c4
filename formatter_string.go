package zkafka

// The string formatter: the payload as a string or bytes, unchanged.

import "fmt"

// stringFormatter is StringFmt: strings and byte slices go to the wire as they are.
type stringFormatter struct{}

func (stringFormatter) marshall(req marshReq) ([]byte, error) {
	switch v := req.subject.(type) {
	case string:
		return []byte(v), nil
	case []byte:
		return v, nil
	case *string:
		if v == nil {
			return nil, nil
		}
		return []byte(*v), nil
	case *[]byte:
		if v == nil {
			return nil, nil
		}
		return *v, nil
	default:
		return nil, fmt.Errorf("zkafka: string formatter cannot encode %T: use a string, []byte, *string or *[]byte", req.subject)
	}
}

func (stringFormatter) unmarshal(req unmarshReq) error {
	switch t := req.target.(type) {
	case *string:
		if t == nil {
			return fmt.Errorf("zkafka: string formatter cannot decode into a nil *string")
		}
		*t = string(req.data)
		return nil
	case *[]byte:
		if t == nil {
			return fmt.Errorf("zkafka: string formatter cannot decode into a nil *[]byte")
		}
		if req.data == nil {
			*t = nil
			return nil
		}
		*t = append([]byte(nil), req.data...)
		return nil
	default:
		return fmt.Errorf("zkafka: string formatter cannot decode into %T: use a *string or *[]byte", req.target)
	}
}
