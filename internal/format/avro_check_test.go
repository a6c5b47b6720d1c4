package format

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

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
