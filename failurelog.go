package zkafka

// Failures that repeat — a broker that is down or refuses us, a write the broker rejects —
// reach the user's Logger as one line when they start, then at most one line per
// failureSummaryEvery while they go on, which says how often they repeated meanwhile: never a
// flood, never silence (G18). KReader.poll (reader.go) logs the consumer's errors through it,
// producers.drain (producer.go) the producers'.
//
// Invariant: for each failure (the log message and the librdkafka error code, or the error's
// text for other errors) at most one line is written per failureSummaryEvery, and none of its
// occurrences goes uncounted: each is either written or counted into the next line.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// failureSummaryEvery is how often, at most, one repeating failure is logged.
const failureSummaryEvery = 30 * time.Second

// maxFailureKinds bounds the failures remembered at once; beyond it they are forgotten and
// logged afresh.
const maxFailureKinds = 256

// failureLog rate-limits the logging of repeating failures. The zero value is not usable; use
// newFailureLog.
type failureLog struct {
	logger Logger
	now    func() time.Time // time.Now; tests set it

	mu   sync.Mutex
	runs map[string]*failureRun
}

// failureRun is one repeating failure.
type failureRun struct {
	logged   time.Time // when it was last written
	repeated int       // occurrences counted since then
}

func newFailureLog(l Logger) *failureLog {
	return &failureLog{logger: l, now: time.Now, runs: map[string]*failureRun{}}
}

// errorf writes msg at error level, or counts it (see failureLog).
func (f *failureLog) errorf(ctx context.Context, msg string, err error, keysAndValues ...any) {
	if kv, ok := f.due(msg, err, keysAndValues); ok {
		f.logger.Errorw(ctx, msg, kv...)
	}
}

// warnf writes msg at warning level, or counts it (see failureLog).
func (f *failureLog) warnf(ctx context.Context, msg string, err error, keysAndValues ...any) {
	if kv, ok := f.due(msg, err, keysAndValues); ok {
		f.logger.Warnw(ctx, msg, kv...)
	}
}

// due reports whether a line for msg and err is due now, and its key/value pairs.
func (f *failureLog) due(msg string, err error, kv []any) ([]any, bool) {
	key := msg + "\x00" + failureKey(err)
	now := f.now()
	f.mu.Lock()
	r := f.runs[key]
	if r == nil {
		if len(f.runs) >= maxFailureKinds {
			clear(f.runs)
		}
		r = &failureRun{}
		f.runs[key] = r
	} else if now.Sub(r.logged) < failureSummaryEvery {
		r.repeated++
		f.mu.Unlock()
		return nil, false
	}
	repeated := r.repeated
	r.logged, r.repeated = now, 0
	f.mu.Unlock()
	kv = append(kv, "error", err)
	if repeated > 0 {
		kv = append(kv, "repeated", repeated, "since", now.Add(-failureSummaryEvery).Format(time.RFC3339))
	}
	return kv, true
}

// failureKey names err's kind: its librdkafka code, which stays the same while its text
// carries changing details (addresses, durations), or else its text.
func failureKey(err error) string {
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		return kerr.Code().String()
	}
	return err.Error()
}

// brokerFailure reports whether a consumer or producer error means the brokers cannot be
// reached or refuse this client: what a user must hear about at once.
func brokerFailure(err error) bool {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return false
	}
	switch kerr.Code() {
	case kafka.ErrAllBrokersDown, kafka.ErrResolve, kafka.ErrAuthentication, kafka.ErrSsl,
		kafka.ErrSaslAuthenticationFailed, kafka.ErrTopicAuthorizationFailed,
		kafka.ErrGroupAuthorizationFailed, kafka.ErrClusterAuthorizationFailed:
		return true
	}
	return false
}
