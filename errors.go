package zkafka

import (
	"errors"
	"fmt"
)

// ProcessError is an error a processor may return to change what the Work does with a failed
// message. A plain error counts towards the circuit breaker and is dead-lettered when a dead
// letter topic is configured.
type ProcessError struct {
	// Err is the underlying failure.
	Err error
	// DisableCircuitBreak, when true, keeps this failure from counting towards the circuit
	// breaker (default false: it counts).
	DisableCircuitBreak bool
	// DisableDLTWrite, when true, skips the dead letter write for this message; the message is
	// then simply marked finished (default false: it is dead-lettered when a topic is set).
	DisableDLTWrite bool
}

// Error returns the underlying error's text.
func (p ProcessError) Error() string {
	if p.Err == nil {
		return "zkafka: process error"
	}
	return p.Err.Error()
}

// Unwrap returns the underlying error, for errors.Is and errors.As.
func (p ProcessError) Unwrap() error {
	return p.Err
}

// configError is a permanent error about a configuration a person has to fix.
type configError struct {
	msg string
}

func (e *configError) Error() string { return e.msg }

// errConfig builds a configuration error; messages are sentences naming the field.
func errConfig(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf("zkafka: "+format, args...)}
}

// IsConfigError reports whether err (or an error it wraps) is a configuration error: a
// permanent failure that retrying will not fix.
func IsConfigError(err error) bool {
	var ce *configError
	return errors.As(err, &ce)
}
