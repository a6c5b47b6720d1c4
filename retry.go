package zkafka

// In-process retries (WithRetry): the policy, its defaults and validation, and the backoff
// before each retry. A message whose processor fails with a transient error (errclass.go) and
// has attempts left waits in its virtual partition's parking (parking.go) until its backoff is
// over, then runs again; later messages of its key wait behind it, other keys flow on.
//
// Invariant: a message runs at most MaxAttempts times in one Work; only its last failure
// reaches the circuit breaker, the dead letter topic and the OnDone callbacks.
//
// Work.Run validates the policy; processor.go's complete asks retryIn whether and when a
// failed message runs again.

import (
	"math"
	"math/rand/v2"
	"time"
)

// RetryPolicy says how often and after what backoff a Work runs the processor again for a
// message that failed with a transient error (see WithRetry). The zero value of each field
// takes its default.
type RetryPolicy struct {
	// MaxAttempts is how many times the processor runs for one message, the first run
	// included (default 3; 1 means no retry).
	MaxAttempts int
	// InitialBackoff is the wait before the first retry; each further retry waits twice as
	// long as the one before (default 100 ms).
	InitialBackoff time.Duration
	// MaxBackoff caps the wait before a retry (default 10 s, or InitialBackoff when that is
	// longer).
	MaxBackoff time.Duration
	// Jitter is the fraction of each wait that is random, in [0, 1]: the wait is drawn
	// uniformly from [w × (1 − Jitter), w] (default 0: no jitter). 0.2 spreads out the
	// retries of many workers hitting one dependency.
	Jitter float64
}

// Defaults of RetryPolicy.
const (
	defaultRetryAttempts       = 3
	defaultRetryInitialBackoff = 100 * time.Millisecond
	defaultRetryMaxBackoff     = 10 * time.Second
)

// WithRetry makes the Work run the processor again for a message that failed with a
// transient error, after an exponential backoff with jitter, up to p.MaxAttempts runs in all;
// the last failure goes to the dead letter topic (default: off, every failure is final, as
// in zkafka v2). While a message waits, the later messages of its key wait behind it, so a key
// stays in order (G2); other keys, of the same Kafka partition and virtual partition
// included, go on; the partition's committed offset stays below the waiting message; the
// reader keeps polling. A revoke of its partition or a stop lets the waiting message go
// unfinished: whoever reads the partition next runs it again from its first attempt. Errors
// that are the message's own fault (PermanentError, Decode errors, panics) are never retried.
// Message.Attempt tells the processor which run it is. The circuit breaker counts a message
// once, after its last attempt. Waiting messages count toward MaxInFlight.
func WithRetry(p RetryPolicy) WorkOption {
	return workOptionFunc(func(w *Work) { w.retry = &p })
}

// withDefaults fills the zero fields.
func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = defaultRetryAttempts
	}
	if p.InitialBackoff == 0 {
		p.InitialBackoff = defaultRetryInitialBackoff
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = max(defaultRetryMaxBackoff, p.InitialBackoff)
	}
	return p
}

// validate returns a configuration error for a policy that cannot be followed (after
// withDefaults).
func (p RetryPolicy) validate() error {
	switch {
	case p.MaxAttempts < 1:
		return errConfig("RetryPolicy.MaxAttempts is %d; it must be at least 1", p.MaxAttempts)
	case p.InitialBackoff < 0:
		return errConfig("RetryPolicy.InitialBackoff is negative (%s)", p.InitialBackoff)
	case p.MaxBackoff < p.InitialBackoff:
		return errConfig("RetryPolicy.MaxBackoff (%s) is shorter than InitialBackoff (%s)", p.MaxBackoff, p.InitialBackoff)
	case !(p.Jitter >= 0 && p.Jitter <= 1): // NaN too
		return errConfig("RetryPolicy.Jitter is %g; it must be in [0, 1]", p.Jitter)
	}
	return nil
}

// backoff is the wait after the failed run number attempt (1-based) before the next run:
// InitialBackoff × 2^(attempt−1), at most MaxBackoff, of which the fraction Jitter is taken
// away at random; r in [0, 1) is the random draw.
func (p RetryPolicy) backoff(attempt int, r float64) time.Duration {
	b := p.InitialBackoff
	for i := 1; i < attempt && b < p.MaxBackoff; i++ {
		if b > math.MaxInt64/2 {
			b = p.MaxBackoff
			break
		}
		b *= 2
	}
	b = min(b, p.MaxBackoff)
	return b - time.Duration(p.Jitter*r*float64(b))
}

// retryIn reports whether m, whose processor just failed with err, runs again, and after how
// long. p is nil when the Work has no retries.
func (p *RetryPolicy) retryIn(m *Message, err error) (time.Duration, bool) {
	if p == nil || int(m.retries)+1 >= p.MaxAttempts || classify(err) == classPermanent {
		return 0, false
	}
	return p.backoff(int(m.retries)+1, rand.Float64()), true
}
