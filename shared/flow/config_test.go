package flow

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseSpecs(t *testing.T) {
	t.Parallel()
	f := Flags{
		Breaker:          "min-runs=10,failure-ratio=90%",
		BreakerOverrides: "partner:window=1m;batch:off",
		RateLimits:       "email=50/s; partner=300/m,burst=10",
		Keys:             "customer=key:payload.customerId,concurrency:2;ledger=key:payload.account,ordered;plain=key:x",
	}
	c, err := f.Config()
	require.NoError(t, err)
	c = c.WithDefaults()
	require.Equal(t, Breaker{MinRuns: 10, Ratio: 0.9, Window: 30 * time.Second, Probe: 5 * time.Second, MaxProbe: 30 * time.Second}, c.Breaker)
	require.Equal(t, time.Minute, c.Breakers["partner"].Window)
	require.Equal(t, 10, c.Breakers["partner"].MinRuns, "knobs not named come from -breaker")
	require.True(t, c.Breakers["batch"].Off)
	require.Equal(t, Rate{PerSecond: 50, Burst: 1}, c.Rates["email"])
	require.Equal(t, Rate{PerSecond: 5, Burst: 10}, c.Rates["partner"])
	require.Equal(t, Key{Path: "payload.customerId", Concurrency: 2}, c.Keys["customer"])
	require.Equal(t, Key{Path: "payload.account", Concurrency: 1, Ordered: true}, c.Keys["ledger"])
	require.Equal(t, Key{Path: "x", Concurrency: 1}, c.Keys["plain"])
	require.NoError(t, c.Validate([]string{"email", "partner", "batch", "customer", "ledger", "plain"}))

	off, err := Flags{Breaker: "off"}.Config()
	require.NoError(t, err)
	require.True(t, off.WithDefaults().Breaker.Off, "one setting turns every breaker off")
}

// Every bad spec names the flag, its variable and the part at fault.
func TestBadSpecs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		flags Flags
		want  []string
	}{
		{"unknown knob", Flags{Breaker: "min-run=3"}, []string{"-breaker", "RETRIGGER_BREAKER", `unknown knob "min-run"`}},
		{"ratio above 1", Flags{Breaker: "failure-ratio=1.5"}, []string{"-breaker", "failure-ratio"}},
		{"override without knobs", Flags{BreakerOverrides: "partner"}, []string{"-breaker-overrides", "RETRIGGER_BREAKER_OVERRIDES", `"partner"`}},
		{"zero rate", Flags{RateLimits: "email=0/s"}, []string{"-rate-limits", "RETRIGGER_RATE_LIMITS", "email", "positive"}},
		{"negative rate", Flags{RateLimits: "email=-5/s"}, []string{"-rate-limits", "positive"}},
		{"rate without unit", Flags{RateLimits: "email=5"}, []string{"-rate-limits", "50/s"}},
		{"rate unit", Flags{RateLimits: "email=5/d"}, []string{"-rate-limits", `unknown unit "d"`}},
		{"zero burst", Flags{RateLimits: "email=5/s,burst=0"}, []string{"-rate-limits", "burst"}},
		{"type twice", Flags{RateLimits: "email=5/s;email=6/s"}, []string{"-rate-limits", "named twice"}},
		{"bad type", Flags{RateLimits: "a.b=5/s"}, []string{"-rate-limits", `"a.b=5/s"`}},
		{"no key", Flags{Keys: "customer=concurrency:2"}, []string{"-keys", "RETRIGGER_KEYS", "names no key"}},
		{"empty path part", Flags{Keys: "customer=key:payload..id"}, []string{"-keys", "empty part"}},
		{"operator path", Flags{Keys: "customer=key:payload.$id"}, []string{"-keys", "'$'"}},
		{"reserved path", Flags{Keys: "customer=key:retrigger.lease"}, []string{"-keys", "bookkeeping"}},
		{"ordered with concurrency", Flags{Keys: "customer=key:x,ordered,concurrency:3"}, []string{"-keys", "one at a time"}},
		{"unknown key part", Flags{Keys: "customer=key:x,parallel:3"}, []string{"-keys", "unknown part"}},
		{"zero concurrency", Flags{Keys: "customer=key:x,concurrency:0"}, []string{"-keys", "at least 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.flags.Breaker == "" {
				tt.flags.Breaker = "on"
			}
			_, err := tt.flags.Config()
			require.Error(t, err)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

// A limit of a type the replica does not run is an error naming it: a
// typo would otherwise limit nothing.
func TestUnknownTypes(t *testing.T) {
	t.Parallel()
	for _, f := range []Flags{
		{Breaker: "on", RateLimits: "emial=5/s"},
		{Breaker: "on", Keys: "emial=key:x"},
		{Breaker: "on", BreakerOverrides: "emial:off"},
	} {
		c, err := f.Config()
		require.NoError(t, err)
		err = c.Validate([]string{"email", "sms"})
		var fe *Error
		require.True(t, errors.As(err, &fe), "%v", err)
		require.Contains(t, err.Error(), `unknown type "emial": this replica runs email, sms`)
		require.NotEmpty(t, fe.Setting)
	}
}

// The specs a replica runs with print as they are read.
func TestSpecsPrintAsRead(t *testing.T) {
	t.Parallel()
	b, err := ParseBreaker(defaultBreaker.String(), Breaker{})
	require.NoError(t, err)
	require.Equal(t, defaultBreaker, b)
	rates, err := ParseRates("x=" + Rate{PerSecond: 2.5, Burst: 4}.String())
	require.NoError(t, err)
	require.Equal(t, Rate{PerSecond: 2.5, Burst: 4}, rates["x"])
	for _, k := range []Key{{Path: "a.b", Concurrency: 3}, {Path: "c", Concurrency: 1, Ordered: true}} {
		keys, err := ParseKeys("x=" + k.String())
		require.NoError(t, err)
		require.Equal(t, k, keys["x"])
	}
}

func FuzzParseSpecs(f *testing.F) {
	f.Add("min-runs=10,failure-ratio=90%", "partner:off", "email=50/s;partner=5/s,burst=10", "customer=key:payload.customerId,concurrency:1")
	f.Add("off", "a:window=1m", "x=1/h", "y=key:a.b,ordered")
	f.Fuzz(func(t *testing.T, breaker, overrides, rates, keys string) {
		c, err := Flags{Breaker: breaker, BreakerOverrides: overrides, RateLimits: rates, Keys: keys}.Config()
		if err != nil {
			require.True(t, strings.HasPrefix(err.Error(), "invalid -"), "%v", err)
			return
		}
		var types []string
		for _, m := range []map[string]bool{keysOf(c.Breakers), keysOf(c.Rates), keysOf(c.Keys)} {
			for t := range m {
				types = append(types, t)
			}
		}
		// What parses validates, with its types known.
		require.NoError(t, c.Validate(types))
	})
}

func keysOf[V any](m map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}
