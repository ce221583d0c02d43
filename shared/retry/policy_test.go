package retry

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/require"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/event"
)

func TestBackoffGrowsAndCaps(t *testing.T) {
	t.Parallel()
	p := Policy{InitialInterval: time.Second, Multiplier: 2, MaxInterval: 10 * time.Second, RandomizationFactor: -1, MaxAttempts: 9}.WithDefaults()
	var got []time.Duration
	for n := int64(1); n <= 6; n++ {
		got = append(got, p.Backoff(n, nil))
	}
	require.Equal(t, []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}, got)
}

func TestBackoffJitterIsDeterministicAndBounded(t *testing.T) {
	t.Parallel()
	p := Policy{InitialInterval: time.Second, MaxAttempts: 5, RandomizationFactor: 0.5}.WithDefaults()
	a, b := Rand(42), Rand(42)
	for n := int64(1); n <= 5; n++ {
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
		attempts    int64
		maxAttempts int64
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
	require.EqualValues(t, 10, got["email"].MaxAttempts)
	require.Equal(t, 5*time.Second, got["email"].InitialInterval)
	require.Equal(t, time.Hour, got["partner"].MaxInterval)
	require.Equal(t, base.MaxAttempts, got["partner"].MaxAttempts)
	ps := Policies{Default: base, ByType: got}
	require.EqualValues(t, 10, ps.For("email").MaxAttempts)
	require.Equal(t, base, ps.For("other"))

	for _, bad := range []string{"email", "email:", "email:max=3", "email:initial=soon", "email:max-attempts=0", ":initial=1s",
		"email:multiplier=NaN", "email:randomization=NaN", "email:multiplier=+Inf", "em.ail:initial=1s",
		"email:initial=1s;email:initial=2s", "email:initial=1s,initial=2s", "email:initial="} {
		_, err := ParseOverrides(bad, base)
		require.Error(t, err, bad)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, DefaultPolicy().Validate())
	p := DefaultPolicy()
	p.MaxInterval = time.Millisecond
	require.ErrorContains(t, p.Validate(), "MaxInterval")
}

// The closed form gives backoff/v4's own sequence, and any count, however
// large, in constant time.
func TestBackoffMatchesBackoffV4(t *testing.T) {
	t.Parallel()
	for _, p := range []Policy{
		{InitialInterval: time.Second, Multiplier: 2, MaxInterval: 5 * time.Minute},
		{InitialInterval: 100 * time.Millisecond, Multiplier: 1.5, MaxInterval: time.Hour},
		{InitialInterval: 3 * time.Second, Multiplier: 1, MaxInterval: time.Minute},
		{InitialInterval: time.Millisecond, Multiplier: 10, MaxInterval: 24 * time.Hour},
	} {
		b := &backoff.ExponentialBackOff{InitialInterval: p.InitialInterval, Multiplier: p.Multiplier, MaxInterval: p.MaxInterval,
			RandomizationFactor: 0, Clock: backoff.SystemClock, Stop: backoff.Stop}
		b.Reset()
		for n := int64(1); n <= 60; n++ {
			want := b.NextBackOff()
			got := p.Backoff(n, nil)
			require.InDelta(t, float64(want), float64(got), float64(want)*1e-9+1, "%+v after %d failures", p, n)
		}
		for _, n := range []int64{1e6, 1e11, math.MaxInt64} {
			want := p.MaxInterval
			if p.Multiplier == 1 {
				want = p.InitialInterval // never grows
			}
			require.Equal(t, want, p.Backoff(n, nil), "%+v after %d failures", p, n)
		}
	}
	p := DefaultPolicy()
	require.LessOrEqual(t, p.Backoff(math.MaxInt64, func() float64 { return 0.999 }), time.Duration(float64(p.MaxInterval)*1.2))
}

// A per-type policy that sets only some knobs takes the others from the
// default; errors name the Go field for library callers and the flag for
// the command line.
func TestPoliciesDefaults(t *testing.T) {
	t.Parallel()
	ps := Policies{Default: Policy{InitialInterval: 3 * time.Second}, ByType: map[string]Policy{"email": {MaxAttempts: 9}}}.WithDefaults()
	require.NoError(t, ps.Validate("consumer.Config.Policies"))
	require.EqualValues(t, 9, ps.For("email").MaxAttempts)
	require.Equal(t, 3*time.Second, ps.For("email").InitialInterval)
	require.Equal(t, DefaultMultiplier, ps.For("email").Multiplier)
	require.EqualValues(t, DefaultMaxAttempts, ps.For("sms").MaxAttempts)

	bad := Policies{ByType: map[string]Policy{"email": {Multiplier: math.NaN()}}}.WithDefaults()
	err := bad.Validate("consumer.Config.Policies")
	require.EqualError(t, err, `invalid consumer.Config.Policies.ByType["email"].Multiplier: type email: must be a number of at least 1, got NaN`)
	require.EqualError(t, config.ForFlags(err), "invalid -retry-overrides (RETRIGGER_RETRY_OVERRIDES): type email: must be a number of at least 1, got NaN")
	nan := Policies{Default: Policy{RandomizationFactor: math.NaN()}}.WithDefaults()
	require.EqualError(t, config.ForFlags(nan.Validate("x")), "invalid -retry-randomization (RETRIGGER_RETRY_RANDOMIZATION): must be a number in [0, 1) (negative: none), got NaN")
}

// Every float of a policy must be a number: NaN compares false with every
// bound, and -Inf would pass for "negative: no jitter".
func TestNonFiniteFloatsAreRejected(t *testing.T) {
	t.Parallel()
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name      string
		policy    Policy
		overrides string
		wantErr   string
	}{
		{"multiplier NaN", Policy{Multiplier: nan}, "", "invalid -retry-multiplier (RETRIGGER_RETRY_MULTIPLIER)"},
		{"multiplier +Inf", Policy{Multiplier: inf}, "", "invalid -retry-multiplier"},
		{"multiplier -Inf", Policy{Multiplier: -inf}, "", "invalid -retry-multiplier"},
		{"randomization NaN", Policy{RandomizationFactor: nan}, "", "invalid -retry-randomization (RETRIGGER_RETRY_RANDOMIZATION)"},
		{"randomization +Inf", Policy{RandomizationFactor: inf}, "", "invalid -retry-randomization"},
		{"randomization -Inf", Policy{RandomizationFactor: -inf}, "", "invalid -retry-randomization"},
		{"override multiplier NaN", Policy{}, "email:multiplier=NaN", "multiplier=NaN: must be a finite number"},
		{"override multiplier -Inf", Policy{}, "email:multiplier=-Inf", "must be a finite number"},
		{"override randomization -Inf", Policy{}, "email:randomization=-Inf", "randomization=-Inf: must be a finite number"},
		{"override randomization -inf", Policy{}, "email:randomization=-inf", "must be a finite number"},
		{"override randomization +Inf", Policy{}, "email:randomization=+Inf", "must be a finite number"},
		{"negative randomization is none", Policy{RandomizationFactor: -1}, "email:randomization=-0.5", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ps := Policies{Default: tt.policy}
			var err error
			if tt.overrides != "" {
				ps.ByType, err = ParseOverrides(tt.overrides, ps.Default.WithDefaults())
			}
			if err == nil {
				err = config.ForFlags(ps.WithDefaults().Validate("consumer.Config.Policies"))
			}
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// FuzzParseOverrides: any input gives policies that validate, or an
// error; never a panic, and never a policy whose delays are not numbers.
func FuzzParseOverrides(f *testing.F) {
	for _, seed := range []string{
		"email:max-attempts=10,initial=5s;partner:max-interval=1h",
		"email:multiplier=NaN", "email:randomization=-Inf", "email:randomization=-0.5",
		"email:initial=1s;email:initial=2s", "em.ail:initial=1s", ":", ";;", "a:b=c=d",
		"email:initial=9223372036854775807ns,max-interval=9223372036854775807ns,multiplier=1e308",
		"email:max-attempts=9223372036854775807,multiplier=1.0000001",
	} {
		f.Add(seed)
	}
	base := DefaultPolicy()
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseOverrides(s, base)
		if err != nil {
			if got != nil {
				t.Fatalf("ParseOverrides(%q) returned policies with an error", s)
			}
			return
		}
		ps := Policies{Default: base, ByType: got}
		if err := ps.WithDefaults().Validate("p"); err != nil {
			t.Fatalf("ParseOverrides(%q) = %+v, which does not validate: %v", s, got, err)
		}
		for typ, p := range got {
			if err := event.ValidateType(typ); err != nil {
				t.Fatalf("ParseOverrides(%q) accepted the type %q: %v", s, typ, err)
			}
			for _, n := range []int64{1, 2, 64, math.MaxInt64} {
				if d := p.Backoff(n, Rand(1)); d < 0 || float64(d) > float64(p.MaxInterval)*(1+p.RandomizationFactor)+1 {
					t.Fatalf("ParseOverrides(%q): type %s: Backoff(%d) = %s, outside [0, max interval + jitter]", s, typ, n, d)
				}
			}
		}
	})
}
