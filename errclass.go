package zkafka

// Error classes (G17): what a failed message's error says about whose fault the failure is.
//
//   - permanent: the message itself is at fault, and running the handler again cannot help.
//     A Message.Decode error (any formatter, schema registry included, unless the registry
//     could not be reached), a panic of the handler (or of a hook run for the message), and an
//     error the handler marked with PermanentError. It is not retried and does not count
//     toward the circuit breaker: it goes to the dead letter topic, or is skipped with one log
//     line when there is none.
//   - transient: everything else, a plain error included, as in zkafka v2. It may pass with
//     time (a dependency is down or slow): it is retried when the Work has WithRetry, and its
//     final failure counts toward the circuit breaker (unless ProcessError.DisableCircuitBreak).
//
// Invariant: the class is read from the whole error chain (errors.As), so wrapping an error
// with %w keeps its class. processor.go's complete and retry.go's retryIn call classify for a failed run.

import (
	"errors"
	"io"
	"net"
	"net/url"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/schemaregistry/rest"
)

// errClass is the class of a failed message's error.
type errClass uint8

const (
	classTransient errClass = iota // may pass with time: retried, counted by the breaker
	classPermanent                 // the message's own fault: neither retried nor counted
)

func (c errClass) String() string {
	if c == classPermanent {
		return "permanent"
	}
	return "transient"
}

// permanentError marks an error as the message's own fault.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// PermanentError marks err as a failure of the message itself, one that no retry can fix
// (invalid content, a business rule the message breaks): the Work does not retry it and does
// not count it toward the circuit breaker, and writes it to the dead letter topic (or skips it
// with one log line when there is none). The error text is err's. Wrapping the result with %w
// (or in a ProcessError) keeps the mark. PermanentError(nil) is nil. Without it, an error
// returned by a processor is transient (the default, as in zkafka v2).
func PermanentError(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanentError reports whether the Work treats err as the message's own fault: err, or an
// error it wraps, was made by PermanentError, is a Message.Decode failure, or is a recovered
// panic.
func IsPermanentError(err error) bool { return classify(err) == classPermanent }

// decodeError is a Message.Decode failure: the payload is not what the formatter reads.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return errPrefix + strings.TrimPrefix(e.err.Error(), errPrefix) }
func (e *decodeError) Unwrap() error { return e.err }

// classify returns the class of a failed message's error (nil is transient: no failure).
func classify(err error) errClass {
	if err == nil {
		return classTransient
	}
	if _, ok := errors.AsType[*permanentError](err); ok || isPanic(err) {
		return classPermanent
	}
	if de, ok := errors.AsType[*decodeError](err); ok && !registryUnavailable(de.err) {
		return classPermanent
	}
	return classTransient
}

// registryUnavailable reports whether a decode error is the schema registry's failure rather
// than the payload's: the registry could not be reached, or answered with a server error.
// Such a failure passes with time, like any outage of a dependency.
func registryUnavailable(err error) bool {
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ue) {
		// The HTTP client's errors: a url.Error around the network's (the mock registry
		// answers "not found" as a url.Error around a plain error).
		return ue.Timeout() || errors.As(ue.Err, &ne) || errors.Is(ue.Err, io.EOF) || errors.Is(ue.Err, io.ErrUnexpectedEOF)
	}
	if errors.As(err, &ne) {
		return true
	}
	var re *rest.Error
	if errors.As(err, &re) {
		return (re.Code >= 500 && re.Code < 600) || re.Code >= 50000
	}
	return false
}
