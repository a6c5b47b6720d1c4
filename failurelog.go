package zkafka

// Failures that repeat — a broker that is down or refuses us, a write the broker rejects, a
// read that fails, a dead letter topic that is down, a librdkafka warning — reach the user's
// Logger as one line when they start; their repeats are counted, and one summary line per
// failureSummaryEvery says how often they repeated and when last: never a flood, never
// silence (G18). The summary is written by a timer, so a failure that stops repeating is still
// summarised, and by close for what is left. KReader.poll (reader.go) logs the consumer's
// errors through it, producers.drain (producer.go) the producers', routeLogs (clientlogs.go)
// librdkafka's log lines, and a Run (work.go) its failed reads and dead letter writes.
//
// Invariant: for each failure (a key: the log message and the librdkafka error code, or the
// error's text for other errors) at most one line is written per failureSummaryEvery, and
// none of its occurrences goes uncounted: each is either written or counted into the next
// summary, which close writes at the latest.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// failureSummaryEvery is how often, at most, one repeating failure is logged.
const failureSummaryEvery = 30 * time.Second

// maxFailureKinds bounds the failures remembered at once; beyond it they are forgotten
// (their pending repeats summarised) and logged afresh.
const maxFailureKinds = 256

// logLevel is a Logger method.
type logLevel int8

const (
	levelDebug logLevel = iota
	levelInfo
	levelWarn
	levelError
)

// write writes msg at level to l.
func (lv logLevel) write(ctx context.Context, l Logger, msg string, kv []any) {
	switch lv {
	case levelDebug:
		l.Debugw(ctx, msg, kv...)
	case levelInfo:
		l.Infow(ctx, msg, kv...)
	case levelWarn:
		l.Warnw(ctx, msg, kv...)
	default:
		l.Errorw(ctx, msg, kv...)
	}
}

// failureLog rate-limits the logging of repeating failures. The zero value is not usable; use
// newFailureLog. Its owner calls close when done.
//
// Guards: any goroutine logs through it, and its summary timers run on their own; logger, now
// and after are immutable once it is shared (tests set now and after before).
type failureLog struct {
	logger Logger
	now    func() time.Time                                   // time.Now; tests set it
	after  func(d time.Duration, f func()) (stop func() bool) // time.AfterFunc; tests set it

	mu     sync.Mutex
	runs   map[string]*failureRun // guarded by mu, as every field of its runs
	closed bool                   // guarded by mu
}

// failureRun is one repeating failure. Guarded by its failureLog's mu.
type failureRun struct {
	logged   time.Time   // when it was last written
	repeated int         // occurrences counted since then
	last     time.Time   // when the last counted one happened
	line     failureLine // the last counted one
	stop     func() bool // stops the pending summary; nil: none pending
}

// failureLine is one occurrence, as it would be written.
type failureLine struct {
	ctx   context.Context
	level logLevel
	msg   string
	kv    []any
}

func newFailureLog(l Logger) *failureLog {
	return &failureLog{
		logger: l,
		now:    time.Now,
		after:  func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop },
		runs:   map[string]*failureRun{},
	}
}

// errorf writes msg at error level, or counts it (see failureLog); err is added as "error".
func (f *failureLog) errorf(ctx context.Context, msg string, err error, keysAndValues ...any) {
	f.log(ctx, levelError, msg+"\x00"+failureKey(err), msg, append(keysAndValues, "error", err)...)
}

// infof writes msg at info level, or counts it (see failureLog); err is added as "error".
func (f *failureLog) infof(ctx context.Context, msg string, err error, keysAndValues ...any) {
	f.log(ctx, levelInfo, msg+"\x00"+failureKey(err), msg, append(keysAndValues, "error", err)...)
}

// warnf writes msg at warning level, or counts it (see failureLog); err is added as "error".
func (f *failureLog) warnf(ctx context.Context, msg string, err error, keysAndValues ...any) {
	f.log(ctx, levelWarn, msg+"\x00"+failureKey(err), msg, append(keysAndValues, "error", err)...)
}

// log writes msg at level when no line of key was written in the last failureSummaryEvery;
// otherwise it counts it, and makes sure a summary is due.
func (f *failureLog) log(ctx context.Context, level logLevel, key, msg string, kv ...any) {
	f.logFirst(ctx, level, key, msg, kv, nil)
}

// logFirst is log with fields written only in a line written at once, never in a summary: a
// panic's stack is written with the first panic of a kind, and its repeats are counted.
func (f *failureLog) logFirst(ctx context.Context, level logLevel, key, msg string, kv, first []any) {
	now := f.now()
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		level.write(ctx, f.logger, msg, append(kv, first...))
		return
	}
	r := f.runs[key]
	if r == nil {
		if len(f.runs) >= maxFailureKinds {
			f.mu.Unlock()
			f.forgetAll()
			f.mu.Lock()
		}
		r = &failureRun{}
		f.runs[key] = r
	} else if r.repeated > 0 || now.Sub(r.logged) < failureSummaryEvery {
		r.repeated++
		r.last = now
		r.line = failureLine{ctx: ctx, level: level, msg: msg, kv: kv}
		if r.stop == nil {
			r.stop = f.after(r.logged.Add(failureSummaryEvery).Sub(now), func() { f.summarise(key) })
		}
		f.mu.Unlock()
		return
	}
	r.logged = now
	f.mu.Unlock()
	level.write(ctx, f.logger, msg, append(kv, first...))
}

// summarise writes the summary of key's repeats, if any are counted.
func (f *failureLog) summarise(key string) {
	f.mu.Lock()
	r := f.runs[key]
	if r == nil || r.repeated == 0 {
		f.mu.Unlock()
		return
	}
	line := r.take(f.now())
	f.mu.Unlock()
	line.write(f.logger)
}

// take returns the summary line of r's counted repeats and resets the count. The caller
// holds the failureLog's lock.
func (r *failureRun) take(now time.Time) failureLine {
	line := r.line
	line.kv = append(line.kv[:len(line.kv):len(line.kv)], "repeated", r.repeated, "last", r.last.Format(time.RFC3339))
	if r.stop != nil {
		r.stop()
		r.stop = nil
	}
	r.logged, r.repeated, r.line = now, 0, failureLine{}
	return line
}

func (l failureLine) write(logger Logger) { l.level.write(l.ctx, logger, l.msg, l.kv) }

// forgetAll writes every pending summary and forgets every failure.
func (f *failureLog) forgetAll() {
	f.mu.Lock()
	lines := f.takeAll()
	clear(f.runs)
	f.mu.Unlock()
	for _, l := range lines {
		l.write(f.logger)
	}
}

// takeAll takes the summaries of every run with counted repeats. The caller holds the lock.
func (f *failureLog) takeAll() []failureLine {
	var lines []failureLine
	now := f.now()
	for _, r := range f.runs {
		if r.repeated > 0 {
			lines = append(lines, r.take(now))
		}
	}
	return lines
}

// close writes the summaries still pending and stops their timers. Its owner calls it when
// nothing more is expected (a client closed, a Run ended); anything later is written as it
// comes.
func (f *failureLog) close() {
	f.mu.Lock()
	f.closed = true
	lines := f.takeAll()
	f.mu.Unlock()
	for _, l := range lines {
		l.write(f.logger)
	}
}

// failureKey names err's kind: its librdkafka code, which stays the same while its text
// carries changing details (addresses, durations), or else its text.
func failureKey(err error) string {
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		return kerr.Code().String()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}
