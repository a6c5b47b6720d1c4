package format

// A bounds check of Avro binary payloads against their writer schema, run before hamba/avro
// decodes them (avro.go, both formatters), so that bad input is an error and
// never a huge allocation or a panic (G12).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/hamba/avro/v2"
)

// Avro payloads are checked against their writer schema before hamba/avro decodes them.
//
// hamba trusts the counts in a payload: decoding into interface values it loops over an
// array or map block count without stopping at the end of the data (a 10-byte payload claiming
// 2^62 elements spins and grows memory until the process dies), and typed decoding allocates a
// whole block up front. A crash of that kind cannot be recovered. checkAvro walks the bytes the
// way the writer schema lays them out and rejects any length or count the remaining bytes
// cannot hold, truncation, and trailing bytes, so that hamba only ever sees well-formed data.

// maxAvroDepth bounds the nesting of values (recursive schemas), keeping the check (and the
// decoding after it) far from a stack overflow.
const maxAvroDepth = 1000

// maxZeroWidthItems bounds the items of an array or map whose items take no bytes at all
// (null, empty records), which the payload size cannot bound.
const maxZeroWidthItems = 1 << 16

var errAvroTruncated = errors.New("payload is truncated")

// avroChecker walks one payload.
type avroChecker struct {
	data []byte
	pos  int
}

// checkAvro reports whether data is exactly one value written with schema.
func checkAvro(schema avro.Schema, data []byte) error {
	c := avroChecker{data: data}
	if err := c.value(schema, 0); err != nil {
		return err
	}
	if c.pos != len(data) {
		return fmt.Errorf("payload has %d trailing bytes after the value (was it written with another schema?)", len(data)-c.pos)
	}
	return nil
}

func (c *avroChecker) remaining() int { return len(c.data) - c.pos }

func (c *avroChecker) skip(n int) error {
	if n < 0 || n > c.remaining() {
		return errAvroTruncated
	}
	c.pos += n
	return nil
}

func (c *avroChecker) long() (int64, error) {
	v, n := binary.Varint(c.data[c.pos:])
	switch {
	case n == 0:
		return 0, errAvroTruncated
	case n < 0:
		return 0, errors.New("varint overflows a long")
	}
	c.pos += n
	return v, nil
}

// length reads a byte length and checks the payload holds that many bytes.
func (c *avroChecker) length() (int, error) {
	l, err := c.long()
	if err != nil {
		return 0, err
	}
	if l < 0 || l > int64(c.remaining()) {
		return 0, fmt.Errorf("length %d does not fit the %d remaining bytes", l, c.remaining())
	}
	return int(l), nil
}

func (c *avroChecker) value(s avro.Schema, depth int) error {
	if depth > maxAvroDepth {
		return fmt.Errorf("values nest deeper than %d levels", maxAvroDepth)
	}
	switch s.Type() {
	case avro.Null:
		return nil
	case avro.Boolean:
		return c.skip(1)
	case avro.Int, avro.Long:
		_, err := c.long()
		return err
	case avro.Float:
		return c.skip(4)
	case avro.Double:
		return c.skip(8)
	case avro.String, avro.Bytes:
		n, err := c.length()
		if err != nil {
			return err
		}
		return c.skip(n)
	case avro.Fixed:
		return c.skip(s.(*avro.FixedSchema).Size())
	case avro.Enum:
		i, err := c.long()
		if err != nil {
			return err
		}
		if i < 0 || i >= int64(len(s.(*avro.EnumSchema).Symbols())) {
			return fmt.Errorf("enum index %d is out of range", i)
		}
		return nil
	case avro.Union:
		types := s.(*avro.UnionSchema).Types()
		i, err := c.long()
		if err != nil {
			return err
		}
		if i < 0 || i >= int64(len(types)) {
			return fmt.Errorf("union index %d is out of range", i)
		}
		return c.value(types[i], depth+1)
	case avro.Record:
		for _, f := range s.(*avro.RecordSchema).Fields() {
			if err := c.value(f.Type(), depth+1); err != nil {
				return err
			}
		}
		return nil
	case avro.Ref:
		return c.value(s.(*avro.RefSchema).Schema(), depth+1)
	case avro.Array:
		items := s.(*avro.ArraySchema).Items()
		return c.blocks(avroMinWidth(items, 0), depth, func() error { return c.value(items, depth+1) })
	case avro.Map:
		values := s.(*avro.MapSchema).Values()
		// Every entry starts with its key, a string of at least one byte.
		return c.blocks(1, depth, func() error {
			n, err := c.length()
			if err != nil {
				return err
			}
			if err := c.skip(n); err != nil {
				return err
			}
			return c.value(values, depth+1)
		})
	default:
		return fmt.Errorf("unsupported avro type %q", s.Type())
	}
}

// blocks walks the blocks of an array or map, whose items take at least minWidth bytes.
func (c *avroChecker) blocks(minWidth, depth int, item func() error) error {
	total := int64(0)
	for {
		count, err := c.long()
		if err != nil {
			return err
		}
		if count == 0 {
			return nil
		}
		if count < 0 {
			if count == math.MinInt64 {
				return errors.New("block count overflows")
			}
			count = -count
			if _, err := c.length(); err != nil { // the block's size in bytes
				return err
			}
		}
		total += count
		switch {
		case minWidth == 0 && total > maxZeroWidthItems:
			return fmt.Errorf("more than %d items that take no bytes", maxZeroWidthItems)
		case minWidth > 0 && count > int64(c.remaining()/minWidth):
			return fmt.Errorf("block of %d items does not fit the %d remaining bytes", count, c.remaining())
		}
		for range count {
			if err := item(); err != nil {
				return err
			}
		}
	}
}

// avroMinWidth is the fewest bytes a value of s can take (0 when unsure).
func avroMinWidth(s avro.Schema, depth int) int {
	if depth > 32 {
		return 0
	}
	switch s.Type() {
	case avro.Null:
		return 0
	case avro.Float:
		return 4
	case avro.Double:
		return 8
	case avro.Fixed:
		return s.(*avro.FixedSchema).Size()
	case avro.Record:
		w := 0
		for _, f := range s.(*avro.RecordSchema).Fields() {
			w += avroMinWidth(f.Type(), depth+1)
		}
		return w
	case avro.Ref:
		return avroMinWidth(s.(*avro.RefSchema).Schema(), depth+1)
	default:
		// boolean, int, long, string, bytes, enum, union, array, map: at least one byte.
		return 1
	}
}
