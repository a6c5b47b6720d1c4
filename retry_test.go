package zkafka

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRetryPolicyDefaultsAndValidation(t *testing.T) {
	require.Equal(t, RetryPolicy{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second},
		RetryPolicy{}.withDefaults())
	require.Equal(t, RetryPolicy{MaxAttempts: 3, InitialBackoff: 30 * time.Second, MaxBackoff: 30 * time.Second},
		RetryPolicy{InitialBackoff: 30 * time.Second}.withDefaults(), "a long first backoff raises the default cap")
	for _, tc := range []struct {
		p    RetryPolicy
		want string
	}{
		{RetryPolicy{MaxAttempts: -1}, "zkafka: RetryPolicy.MaxAttempts is -1; it must be at least 1"},
		{RetryPolicy{InitialBackoff: -time.Second}, "zkafka: RetryPolicy.InitialBackoff is negative (-1s)"},
		{RetryPolicy{InitialBackoff: time.Second, MaxBackoff: time.Millisecond}, "zkafka: RetryPolicy.MaxBackoff (1ms) is shorter than InitialBackoff (1s)"},
		{RetryPolicy{Jitter: 1.5}, "zkafka: RetryPolicy.Jitter is 1.5; it must be in [0, 1]"},
		{RetryPolicy{Jitter: -0.1}, "zkafka: RetryPolicy.Jitter is -0.1; it must be in [0, 1]"},
		{RetryPolicy{Jitter: math.NaN()}, "zkafka: RetryPolicy.Jitter is NaN; it must be in [0, 1]"},
		{RetryPolicy{MaxAttempts: 1}, ""},
		{RetryPolicy{Jitter: 1}, ""},
	} {
		err := tc.p.withDefaults().validate()
		if tc.want == "" {
			require.NoError(t, err)
			continue
		}
		require.EqualError(t, err, tc.want)
		require.True(t, IsConfigError(err))
	}
}

func TestRetryBackoff(t *testing.T) {
	p := RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for _, tc := range []struct {
		name    string
		p       RetryPolicy
		attempt int
		r       float64
		want    time.Duration
	}{
		{"first retry", p, 1, 0, 100 * time.Millisecond},
		{"doubles", p, 2, 0, 200 * time.Millisecond},
		{"doubles again", p, 3, 0, 400 * time.Millisecond},
		{"capped", p, 5, 0, time.Second},
		{"capped far out, no overflow", p, 1000, 0, time.Second},
		{"huge backoff, no overflow", RetryPolicy{InitialBackoff: math.MaxInt64 / 3, MaxBackoff: math.MaxInt64}, 10, 0, math.MaxInt64},
		{"jitter takes away up to its fraction", RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Jitter: 0.5}, 1, 0.999999, 50*time.Millisecond + 50*time.Nanosecond},
		{"jitter with a zero draw", RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Jitter: 0.5}, 2, 0, 200 * time.Millisecond},
		{"full jitter", RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Jitter: 1}, 1, 0.25, 75 * time.Millisecond},
		{"jitter never passes the cap", RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Jitter: 0.2}, 9, 0.5, 900 * time.Millisecond},
		{"zero backoff", RetryPolicy{MaxBackoff: 0}, 3, 0.5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.p.backoff(tc.attempt, tc.r))
		})
	}
}

func TestRetryIn(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 3}.withDefaults()
	plain := errors.New("down")
	m := &Message{}
	wait, ok := p.retryIn(m, plain)
	require.True(t, ok)
	require.Equal(t, 100*time.Millisecond, wait)
	m.retries = 1
	wait, ok = p.retryIn(m, plain)
	require.True(t, ok)
	require.Equal(t, 200*time.Millisecond, wait)
	m.retries = 2
	_, ok = p.retryIn(m, plain)
	require.False(t, ok, "the third run was the last")
	_, ok = p.retryIn(&Message{}, PermanentError(plain))
	require.False(t, ok, "a permanent error is not retried")
	var none *RetryPolicy
	_, ok = none.retryIn(&Message{}, plain)
	require.False(t, ok, "no policy, no retry")
}
