package format

// The string formatter: the payload as a string or bytes, unchanged.

import "fmt"

// stringFormatter is StringFmt: strings and byte slices go to the wire as they are.
type stringFormatter struct{}

func (stringFormatter) Encode(_ string, subject any) ([]byte, error) {
	switch v := subject.(type) {
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
		return nil, fmt.Errorf("string formatter cannot encode %T: use a string, []byte, *string or *[]byte", subject)
	}
}

func (stringFormatter) Decode(_ string, data []byte, target any) error {
	switch t := target.(type) {
	case *string:
		if t == nil {
			return fmt.Errorf("string formatter cannot decode into a nil *string")
		}
		*t = string(data)
		return nil
	case *[]byte:
		if t == nil {
			return fmt.Errorf("string formatter cannot decode into a nil *[]byte")
		}
		if data == nil {
			*t = nil
			return nil
		}
		*t = append([]byte(nil), data...)
		return nil
	default:
		return fmt.Errorf("string formatter cannot decode into %T: use a *string or *[]byte", target)
	}
}
