package zkafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/rest"
	"github.com/stretchr/testify/require"
)

func TestErrorClasses(t *testing.T) {
	plain := errors.New("dependency down")
	decode := &decodeError{err: errors.New("invalid character 'x'")}
	panicked := catch("processor", func() error { panic("boom") })
	unreachable := &decodeError{err: fmt.Errorf("finding the writer schema: %w",
		&url.Error{Op: "Get", URL: "http://sr", Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}})}
	for _, tc := range []struct {
		name string
		err  error
		want errClass
	}{
		{"nil", nil, classTransient},
		{"plain error", plain, classTransient},
		{"timeout", fmt.Errorf("%w (1s)", errProcessTimeout), classTransient},
		{"context cancelled", context.Canceled, classTransient},
		{"ProcessError without a mark", ProcessError{Err: plain, DisableCircuitBreak: true}, classTransient},
		{"PermanentError", PermanentError(plain), classPermanent},
		{"PermanentError wrapped", fmt.Errorf("order 7: %w", PermanentError(plain)), classPermanent},
		{"PermanentError in a ProcessError", ProcessError{Err: PermanentError(plain), DisableDLTWrite: true}, classPermanent},
		{"ProcessError in a PermanentError", PermanentError(ProcessError{Err: plain}), classPermanent},
		{"decode error", decode, classPermanent},
		{"decode error wrapped", fmt.Errorf("decode: %w", decode), classPermanent},
		{"decode error joined", errors.Join(plain, decode), classPermanent},
		{"panic", panicked, classPermanent},
		{"panic wrapped", fmt.Errorf("x: %w", panicked), classPermanent},
		{"registry unreachable", unreachable, classTransient},
		{"registry server error", &decodeError{err: &rest.Error{Code: 50001, Message: "store error"}}, classTransient},
		{"registry HTTP 503", &decodeError{err: &rest.Error{Code: 503}}, classTransient},
		{"registry: schema not found", &decodeError{err: &rest.Error{Code: 40403, Message: "Schema not found"}}, classPermanent},
		{"registry timeout", &decodeError{err: &net.DNSError{IsTimeout: true}}, classTransient},
		{"registry connection cut", &decodeError{err: &url.Error{Op: "Get", URL: "http://sr", Err: io.ErrUnexpectedEOF}}, classTransient},
		{"mock registry: not found", &decodeError{err: &url.Error{Op: "GET", URL: "mock://x", Err: errors.New("Subject Not Found")}}, classPermanent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, classify(tc.err))
			require.Equal(t, tc.want == classPermanent, IsPermanentError(tc.err))
		})
	}
}

func TestPermanentErrorKeepsTextAndChain(t *testing.T) {
	require.NoError(t, PermanentError(nil))
	base := errors.New("bad order")
	err := PermanentError(base)
	require.EqualError(t, err, "bad order")
	require.ErrorIs(t, err, base)
	var pe ProcessError
	require.True(t, errors.As(PermanentError(ProcessError{Err: base, DisableDLTWrite: true}), &pe))
	require.True(t, pe.DisableDLTWrite)
}

// TestDecodeErrorsArePermanent: every formatter's Decode failure is the message's own fault,
// through the wrapping a processor typically adds.
func TestDecodeErrorsArePermanent(t *testing.T) {
	for _, c := range formatterCases(t) {
		garbage := [][]byte{{0x00, 0xff, 0xfe, 0x01, 0x02}, []byte("{not"), c.valid[:len(c.valid)/2]}
		failed := 0
		for _, g := range garbage {
			err := c.message(t, g).Decode(c.target())
			if err == nil {
				continue
			}
			failed++
			require.True(t, IsPermanentError(fmt.Errorf("decode: %w", err)), "%s: %v", c.name, err)
		}
		if c.name != "string" { // any bytes are a string
			require.NotZero(t, failed, "%s: some garbage fails to decode", c.name)
		}
		require.NoError(t, c.message(t, c.valid).Decode(c.target()), c.name)
	}
	require.False(t, IsPermanentError((&Message{}).Decode(new(int))), "no formatter: the Work's configuration, not the message")
}
