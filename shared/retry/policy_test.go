package retry

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackoffGrowsAndCaps(t *testing.T) {
	t.Parallel()
	p := Policy{InitialInterval: time.Second, Multiplier: 2, MaxInterval: 10 * time.Second, RandomizationFactor: -1, MaxAttempts: 9}.WithDefaults()
	var got []time.Duration
	for n := 1; n <= 6; n++ {
		got = append(got, p.Backoff(n, nil))
	}
	require.Equal(t, []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}, got)
}

func TestBackoffJitterIsDeterministicAndBounded(t *testing.T) {
	t.Parallel()
	p := Policy{InitialInterval: time.Second, MaxAttempts: 5, RandomizationFactor: 0.5}.WithDefaults()
	a, b := Rand(42), Rand(42)
	for n := 1; n <= 5; n++ {
		da, db := p.Backoff(n, a), p.Backoff(n, b)
		require.Equal(t, da, db, "same seed, same delay")
		base := p.Backoff(n, nil)
		require.GreaterOrEqual(t, da, base/2)
		require.LessOrEqual(t, da, base*3/2)
	}
	require.Equal(t, 500*time.Millisecond, p.Backoff(1, func() float64 { return 0 }))
}

func TestDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := Policy{InitialInterval: time.Second, Multiplier: 2, MaxInterval: time.Minute, RandomizationFactor: -1, MaxAttempts: 3}.WithDefaults()
	boom := errors.New("boom")
	tests := []struct {
		name        string
		attempts    int
		maxAttempts int
		err         error
		want        Decision
	}{
		{"first failure retries after initial", 1, 0, boom, Decision{Attempts: 1, Retry: true, NextAt: now.Add(time.Second)}},
		{"second failure doubles", 2, 0, boom, Decision{Attempts: 2, Retry: true, NextAt: now.Add(2 * time.Second)}},
		{"max reached", 3, 0, boom, Decision{Attempts: 3}},
		{"per-event max overrides", 3, 5, boom, Decision{Attempts: 3, Retry: true, NextAt: now.Add(4 * time.Second)}},
		{"per-event max lower", 1, 1, boom, Decision{Attempts: 1}},
		{"permanent", 1, 0, Permanent(boom), Decision{Attempts: 1, Permanent: true}},
		{"retry after hint", 1, 0, After(42*time.Second, boom), Decision{Attempts: 1, Retry: true, NextAt: now.Add(42 * time.Second)}},
		{"wrapped permanent", 1, 0, errors.Join(errors.New("ctx"), Permanent(boom)), Decision{Attempts: 1, Permanent: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, p.Decide(tt.attempts, tt.maxAttempts, tt.err, now, nil))
		})
	}
}

func TestParseOverrides(t *testing.T) {
	t.Parallel()
	base := DefaultPolicy()
	got, err := ParseOverrides("email:max-attempts=10,initial=5s; partner:max-interval=1h", base)
	require.NoError(t, err)
	require.Equal(t, 10, got["email"].MaxAttempts)
	require.Equal(t, 5*time.Second, got["email"].InitialInterval)
	require.Equal(t, time.Hour, got["partner"].MaxInterval)
	require.Equal(t, base.MaxAttempts, got["partner"].MaxAttempts)
	ps := Policies{Default: base, ByType: got}
	require.Equal(t, 10, ps.For("email").MaxAttempts)
	require.Equal(t, base, ps.For("other"))

	for _, bad := range []string{"email", "email:max=3", "email:initial=soon", "email:max-attempts=0", ":initial=1s"} {
		_, err := ParseOverrides(bad, base)
		require.Error(t, err, bad)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, DefaultPolicy().Validate())
	p := DefaultPolicy()
	p.MaxInterval = time.Millisecond
	require.ErrorContains(t, p.Validate(), "max interval")
}
