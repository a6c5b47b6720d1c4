package zkafka

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// TestMessageFitsItsSizeClass: a Message is allocated for every record read, so its size
// class is a cost of every message (and of the GC cycles that bytes allocated bring). Its
// fields fill 304 bytes, in the runtime's 320-byte class; padding between its small fields
// once put it in the 352-byte one. A field added past 320 bytes costs 32 more a message.
func TestMessageFitsItsSizeClass(t *testing.T) {
	require.LessOrEqual(t, unsafe.Sizeof(Message{}), uintptr(320))
}
