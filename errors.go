package zkafka

// Errors a user can branch on: ProcessError (what a processor returns to change what happens
// to a failed message) and configuration errors (IsConfigError), plus wrapErr and withPrefix,
// which keep the "zkafka: " prefix once on errors that reach the user.

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/zkafka-go/zkafka/internal/format"
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

// processError finds a ProcessError in err's chain. (errors.AsType rather than errors.As: no
// target escapes to the heap, and no reflection, for every failed message.)
func processError(err error) (ProcessError, bool) {
	if err == nil {
		return ProcessError{}, false
	}
	return errors.AsType[ProcessError](err)
}

// errPrefix starts every error that reaches the user, once.
const errPrefix = "zkafka: "

// wrappedError is an error with the user-facing context of an operation.
type wrappedError struct {
	msg string
	err error
}

func (e *wrappedError) Error() string { return e.msg }
func (e *wrappedError) Unwrap() error { return e.err }

// wrapErr adds context to err for the user while keeping the "zkafka: " prefix once: its
// message is "zkafka: <context>: <err's message without its prefix>", and errors.Is and
// errors.As see err.
func wrapErr(err error, format string, args ...any) error {
	return &wrappedError{
		msg: errPrefix + fmt.Sprintf(format, args...) + ": " + strings.TrimPrefix(err.Error(), errPrefix),
		err: err,
	}
}

// withPrefix gives err, made to be wrapped (internal/format's errors, a user formatter's), the
// "zkafka: " prefix once; errors.Is and errors.As see err.
func withPrefix(err error) error {
	if err == nil {
		return nil
	}
	return &wrappedError{msg: errPrefix + strings.TrimPrefix(err.Error(), errPrefix), err: err}
}

// configError is a permanent error about a configuration a person has to fix.
type configError struct {
	msg string
	err error // what librdkafka said, when it refused the configuration; nil otherwise
}

func (e *configError) Error() string { return e.msg }

func (e *configError) Unwrap() error { return e.err }

// librdkafkaKey finds the configuration key librdkafka names in its refusals ("No such
// configuration property: \"x\"", "Invalid value \"v\" for configuration property \"x\"").
var librdkafkaKey = regexp.MustCompile(`property:? "([^"]+)"`)

// creationError is the error of making a consumer or producer (what, e.g. "consumer orders")
// that failed with err. librdkafka refuses a configuration (an unknown property, an invalid
// value, a conflict) with ErrInvalidArg when the client is made: that is a configuration error
// (IsConfigError), and it names the key and, when the user set it, where.
func creationError(what string, err error, user map[string]any) error {
	var kerr kafka.Error
	if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrInvalidArg {
		return fmt.Errorf(errPrefix+"creating %s: %w", what, err)
	}
	msg := errPrefix + "creating " + what + ": invalid configuration: " + kerr.Error()
	if m := librdkafkaKey.FindStringSubmatch(kerr.Error()); m != nil {
		if _, ok := user[m[1]]; ok {
			msg += " (key " + m[1] + " of AdditionalProps)"
		} else {
			msg += " (key " + m[1] + ")"
		}
	}
	return &configError{msg: msg, err: err}
}

// errConfig builds a configuration error; messages are sentences naming the field.
func errConfig(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(errPrefix+format, args...)}
}

// IsConfigError reports whether err (or an error it wraps) is a configuration error: a
// permanent failure that retrying will not fix. The formatters' configuration errors (an
// unknown formatter, a missing SchemaRegistry.URL, a schema that does not parse) are too.
func IsConfigError(err error) bool {
	if _, ok := errors.AsType[*configError](err); ok {
		return true
	}
	_, ok := errors.AsType[*format.ConfigError](err)
	return ok
}
