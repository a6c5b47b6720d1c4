package zkafka

// How a client's error events about its brokers become one outage: one error line, a
// brokerWatch transition (brokerhealth.go) and its hook, with the reason a person needs.
// librdkafka reports an outage in pieces: a connection error per broker (ErrTransport,
// ErrResolve, ErrSsl: brokerCause), then ErrAllBrokersDown, whose text ("1/1 brokers are
// down") says nothing of why — and sometimes the connection error comes just after it (a
// refused SASL login). So an ErrAllBrokersDown without a known cause waits up to
// brokerCauseWait for one; the outage's reason is then "1/1 brokers are down; last broker
// error: …". Likewise a connection error while the brokers are reachable waits up to
// brokerCauseWait: when an all-brokers-down event follows, it is the outage's cause and not a
// line of its own; otherwise it is a warning (another broker serves). A refusal
// (authentication, authorisation) is an outage of its own.
//
// Invariant: one event, one line: while the client is cut off, every broker error event is
// counted under the outage's one failureLog key (written once, then summarised), never logged
// on its own; the summary of an outage is written before the line that says it ended (flush).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// brokerCauseWait bounds how long an all-brokers-down event waits for its cause.
const brokerCauseWait = 100 * time.Millisecond

// brokerReport turns one client's broker error events into transitions and log lines. The
// goroutine that reads the client's events calls event and settle (the reader goroutine for
// a consumer; a writer's drains, two at once while a replaced producer closes); anyone may
// call alive.
type brokerReport struct {
	watch    *brokerWatch
	failures *failureLog
	msg      string                            // the outage's log message
	warn     string                            // a connection error's, while brokers serve
	kv       []any                             // who: group and topics, or topic and client
	probe    func(kafka.ErrorCode) func() bool // the consumer's way back; nil: signs of life only

	waiting   atomic.Bool // pending or cause is set: read without the lock on the hot path
	mu        sync.Mutex  // guards pending, pendingAt, cause, causeAt
	pending   *kafka.Error
	pendingAt time.Time // an all-brokers-down event waiting for its cause, since
	cause     *kafka.Error
	causeAt   time.Time // a connection error waiting to be an outage's cause or a warning, since
}

// event handles e when it is about the brokers, and reports whether it did; the caller logs
// any other error itself.
func (b *brokerReport) event(e kafka.Error) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case brokerCause(e):
		b.watch.noteCause(e.Error())
		switch {
		case b.pending != nil:
			b.announce(*b.pending)
			b.setPending(nil)
		case b.watch.down.Load():
			b.log(e) // counted into the outage
		case b.cause == nil:
			b.setCause(&e)
		default:
			b.warnf(e) // a second broker's, while the first waits
		}
	case !brokerFailure(e):
		return false
	case e.Code() == kafka.ErrAllBrokersDown && !b.watch.down.Load() && b.watch.lastCause() == "":
		if b.pending == nil {
			b.setPending(&e)
		}
	default:
		b.setCause(nil) // the outage's cause, in its reason
		b.announce(e)
	}
	return true
}

// settle announces an all-brokers-down event that has waited brokerCauseWait for its cause,
// or at once when now is true. The event's reader calls it when it has nothing else to read.
func (b *brokerReport) settle(now bool) {
	if !b.waiting.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pending != nil && (now || time.Since(b.pendingAt) >= brokerCauseWait) {
		b.announce(*b.pending)
		b.setPending(nil)
	}
	b.settleCause(now)
}

// settleCause writes a connection error that has waited brokerCauseWait, or at once when now
// is true, as a warning: no outage followed it. The caller holds mu.
func (b *brokerReport) settleCause(now bool) {
	if b.cause != nil && (now || time.Since(b.causeAt) >= brokerCauseWait) {
		b.warnf(*b.cause)
		b.setCause(nil)
	}
}

// alive records a sign of life (brokerWatch.alive); an all-brokers-down event still waiting
// for its cause is dropped. While nothing waits and the brokers are reachable it costs two
// atomic loads.
func (b *brokerReport) alive() {
	if b.waiting.Load() {
		b.mu.Lock()
		b.setPending(nil)
		b.settleCause(false)
		b.mu.Unlock()
	}
	b.watch.alive()
}

// setPending sets pending (nil: none). The caller holds mu.
func (b *brokerReport) setPending(e *kafka.Error) {
	b.pending, b.pendingAt = e, time.Now()
	b.waiting.Store(b.pending != nil || b.cause != nil)
}

// setCause sets cause (nil: none). The caller holds mu.
func (b *brokerReport) setCause(e *kafka.Error) {
	b.cause, b.causeAt = e, time.Now()
	b.waiting.Store(b.pending != nil || b.cause != nil)
}

// warnf writes a connection error to one broker as a warning (rate-limited).
func (b *brokerReport) warnf(e kafka.Error) {
	b.failures.warnf(context.Background(), b.warn, e, b.kv...)
}

// flush writes the summary of the outage's repeats now. The owner's line that says the
// brokers are back calls it first, so that no summary of an outage follows its end.
func (b *brokerReport) flush() {
	b.failures.summarise(b.msg)
}

// announce makes e an outage: e is logged under the outage's key, then the watch is cut off
// (news only the first time). The line comes first, so that a BrokerStateChanged hook that
// ends the process has not lost it. The caller holds mu.
func (b *brokerReport) announce(e kafka.Error) {
	var err error = e
	if e.Code() == kafka.ErrAllBrokersDown {
		err = allDown{e}
		if cause := b.watch.lastCause(); cause != "" {
			err = fmt.Errorf("%w; last broker error: %s", err, cause)
		}
	}
	var probe func() bool
	if b.probe != nil {
		probe = b.probe(e.Code())
	}
	b.log(err)
	b.watch.failed(err.Error(), probe)
}

// log writes err under the outage's key: at once the first time, then summarised.
func (b *brokerReport) log(err error) {
	kv := append(b.kv[:len(b.kv):len(b.kv)], "error", err)
	b.failures.log(context.Background(), levelError, b.msg, b.msg, kv...)
}

// allDown is an all-brokers-down event. librdkafka's text counts the brokers down, but it can
// say "0/1 brokers are down" when it has not counted the bootstrap broker yet: that reads as
// no outage, so it says "all brokers are down" then.
type allDown struct{ err kafka.Error }

func (e allDown) Error() string {
	if text := e.err.Error(); !strings.HasPrefix(text, "0/") {
		return text
	}
	return "all brokers are down"
}

func (e allDown) Unwrap() error { return e.err }

// brokerFailure reports whether an error event means the client cannot use the brokers:
// none can be reached, or they refuse it (authentication, authorisation).
func brokerFailure(err error) bool {
	return isCode(err, kafka.ErrAllBrokersDown, kafka.ErrAuthentication, kafka.ErrSaslAuthenticationFailed,
		kafka.ErrTopicAuthorizationFailed, kafka.ErrGroupAuthorizationFailed, kafka.ErrClusterAuthorizationFailed)
}

// brokerCause reports whether an error event is a failed connection to one broker, which
// librdkafka retries by itself: a warning while other brokers serve, the cause of an outage
// when none does.
func brokerCause(err error) bool {
	return isCode(err, kafka.ErrTransport, kafka.ErrResolve, kafka.ErrSsl)
}

// routineError reports whether a consumer error is a state the group passes through at
// start-up or when its coordinator moves, which librdkafka waits out by itself: not a
// warning. A coordinator that stays away shows as a stuck partition (stuckwatch.go).
func routineError(err error) bool {
	return isCode(err, kafka.ErrCoordinatorLoadInProgress, kafka.ErrCoordinatorNotAvailable, kafka.ErrNotCoordinator)
}

// topicFailure reports whether a consumer error means a topic it reads does not exist.
func topicFailure(err error) bool {
	return isCode(err, kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic)
}

// consumerError logs an error event of a consumer, rate-limited (failurelog.go), and returns
// it when it is fatal. Errors about the brokers make an outage (event); a topic that does not
// exist is logged at error level, any other error as a warning, each with who (kv).
func (b *brokerReport) consumerError(e error) error {
	var kerr kafka.Error
	isKafka := errors.As(e, &kerr)
	if isKafka && kerr.IsFatal() {
		return wrapErr(e, "fatal consumer error")
	}
	ctx := context.Background()
	switch {
	case isKafka && b.event(kerr):
	case topicFailure(e):
		b.failures.errorf(ctx, "zkafka: consumer cannot read a topic; it keeps trying", e, b.kv...)
	case routineError(e):
		const msg = "zkafka: group coordinator not ready yet; the consumer waits for it"
		b.failures.log(ctx, levelInfo, msg+"\x00"+failureKey(e), msg, append(b.kv[:len(b.kv):len(b.kv)], "error", e)...)
	default:
		b.failures.warnf(ctx, "zkafka: consumer error", e, b.kv...)
	}
	return nil
}
