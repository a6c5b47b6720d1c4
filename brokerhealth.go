package zkafka

// What a consumer or producer knows of its brokers: whether it can reach them and they accept
// it, and if not why and since when (G18). librdkafka says when all brokers are down or refuse
// the client (error events, which brokerReport, below, turns into transitions) but never when
// they are back, so the way back is a sign of life: a message or a rebalance for a consumer,
// a delivery report for a producer, or, while a consumer is cut off, a metadata request every
// brokerProbeEvery that succeeds. KReader (reader.go) and producers (producer.go) each own one; a Work, its
// Status and the BrokerStateChanged hook read it.
//
// Invariant: the listener is called once per transition, in the order of the transitions,
// never concurrently with itself. The reason is the first failure's (often the most specific:
// "Failed to resolve 'host:9092'" comes before "1/1 brokers are down") until the way back.

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

// brokerProbeEvery is how often a consumer cut off from its brokers asks them for metadata.
const brokerProbeEvery = 2 * time.Second

// brokerProbeTimeout bounds one such request (and so how long Close waits for it).
const brokerProbeTimeout = 500 * time.Millisecond

// brokerListener is told about each transition: reachable or not, why not, and since when.
type brokerListener func(reachable bool, reason string, since time.Time)

// brokerWatch is one client's view of its brokers. The zero value is not usable; use
// newBrokerWatch.
//
// Guards: the goroutine that reads the client's events, its probe goroutine, Status and Close
// use it at once.
type brokerWatch struct {
	down atomic.Bool // atomic: mirrors !reachable, read without the lock on the hot path

	notify    sync.Mutex     // held across a transition and its listener calls
	recovered brokerListener // immutable; told first about a way back (the owner's log line)
	mu        sync.Mutex
	state     brokerState    // guarded by mu
	listen    brokerListener // guarded by mu
	cause     string         // guarded by mu; the last broker connection error since the last sign of life
	causeAt   time.Time      // guarded by mu; when it came

	probing   bool           // guarded by mu; a probe goroutine runs
	stop      chan struct{}  // immutable; closed by stopProbe
	stopOnce  sync.Once      // used under mu
	probeDone sync.WaitGroup // one per probe goroutine (Add under mu)
}

// brokerState is a brokerWatch's state at one moment.
type brokerState struct {
	reachable bool
	reason    string    // the broker's or librdkafka's words; "" when reachable
	since     time.Time // when it became what it is (for a new client: when it was made)
}

// newBrokerWatch returns a watch that starts reachable. recovered, when not nil, is called
// with the state that ends at each way back (the reason and start of the outage).
func newBrokerWatch(recovered brokerListener) *brokerWatch {
	return &brokerWatch{
		state:     brokerState{reachable: true, since: time.Now()},
		stop:      make(chan struct{}),
		recovered: recovered,
	}
}

// get returns the current state (reachable, for a nil watch).
func (b *brokerWatch) get() (reachable bool, reason string, since time.Time) {
	if b == nil {
		return true, "", time.Time{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state.reachable, b.state.reason, b.state.since
}

// setListener sets who is told about transitions (nil: nobody).
func (b *brokerWatch) setListener(l brokerListener) {
	b.mu.Lock()
	b.listen = l
	b.mu.Unlock()
}

// failed records that the brokers cannot be reached or refuse the client, for reason. It
// reports whether that is news (the client was reachable until now); a failure that is not
// keeps the first one's reason. probe, when not nil, is
// run every brokerProbeEvery on a goroutine of the watch until it reports success, which
// counts as a sign of life, or stopProbe.
func (b *brokerWatch) failed(reason string, probe func() bool) bool {
	b.notify.Lock()
	defer b.notify.Unlock()
	b.mu.Lock()
	news := b.state.reachable
	if news {
		b.state = brokerState{reachable: false, reason: reason, since: time.Now()}
		b.down.Store(true)
	}
	st, l := b.state, b.listen
	if probe != nil && !b.probing {
		select {
		case <-b.stop:
		default:
			b.probing = true
			b.probeDone.Add(1)
			go b.probe(probe)
		}
	}
	b.mu.Unlock()
	if news && l != nil {
		l(st.reachable, st.reason, st.since)
	}
	return news
}

// alive records a sign of life. It reports whether that is news (the client was cut off).
// While reachable it costs one atomic load; on nil it does nothing.
func (b *brokerWatch) alive() bool {
	if b == nil || !b.down.Load() {
		return false
	}
	b.notify.Lock()
	defer b.notify.Unlock()
	b.mu.Lock()
	was := b.state
	news := !was.reachable
	if news {
		b.state = brokerState{reachable: true, since: time.Now()}
		b.down.Store(false)
		b.cause = ""
	}
	st, l := b.state, b.listen
	b.mu.Unlock()
	if news && b.recovered != nil {
		b.recovered(was.reachable, was.reason, was.since)
	}
	if news && l != nil {
		l(st.reachable, st.reason, st.since)
	}
	return news
}

// causeFresh is how long a broker connection error is taken as the cause of an outage.
const causeFresh = 30 * time.Second

// noteCause remembers text, a broker connection error (brokerCause), as the likely cause of
// an outage; lastCause returns it while it is fresh, "" otherwise.
func (b *brokerWatch) noteCause(text string) {
	b.mu.Lock()
	b.cause, b.causeAt = text, time.Now()
	b.mu.Unlock()
}

func (b *brokerWatch) lastCause() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.causeAt) > causeFresh {
		return ""
	}
	return b.cause
}

// probe runs probe every brokerProbeEvery while the client is cut off.
func (b *brokerWatch) probe(probe func() bool) {
	defer b.probeDone.Done()
	t := time.NewTicker(brokerProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			b.endProbe()
			return
		case <-t.C:
		}
		if !b.down.Load() || probe() {
			b.endProbe()
			b.alive()
			return
		}
	}
}

// endProbe notes that the probe goroutine ends.
func (b *brokerWatch) endProbe() {
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// stopProbe stops probing for good and waits for a probe in progress. Safe to call twice
// and on nil.
func (b *brokerWatch) stopProbe() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.stopOnce.Do(func() { close(b.stop) })
	b.mu.Unlock()
	b.probeDone.Wait()
}

// How a client's error events about its brokers become one outage: one error line, a
// brokerWatch transition and its hook, with the reason a person needs.
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

// brokerCauseWait bounds how long an all-brokers-down event waits for its cause.
const brokerCauseWait = 100 * time.Millisecond

// brokerReport turns one client's broker error events into transitions and log lines. The
// goroutine that reads the client's events calls event and settle (the reader goroutine for
// a consumer; a writer's drains, two at once while a replaced producer closes); anyone may
// call alive.
type brokerReport struct {
	// Immutable once made:
	watch    *brokerWatch
	failures *failureLog
	msg      string                            // the outage's log message
	warn     string                            // a connection error's, while brokers serve
	kv       []any                             // who: group and topics, or topic and client
	probe    func(kafka.ErrorCode) func() bool // the consumer's way back; nil: signs of life only

	waiting   atomic.Bool // atomic: pending or cause is set; read without the lock on the hot path
	mu        sync.Mutex
	pending   *kafka.Error // guarded by mu
	pendingAt time.Time    // guarded by mu; an all-brokers-down event waiting for its cause, since
	cause     *kafka.Error // guarded by mu
	causeAt   time.Time    // guarded by mu; a connection error waiting to be an outage's cause or a warning, since
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
		b.failures.infof(ctx, "zkafka: group coordinator not ready yet; the consumer waits for it", e, b.kv...)
	default:
		b.failures.warnf(ctx, "zkafka: consumer error", e, b.kv...)
	}
	return nil
}
