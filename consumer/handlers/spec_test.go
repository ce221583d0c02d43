package handlers

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/redact"
)

var specOptions = SpecOptions{HTTPTimeout: time.Second, Demo: DemoConfig{FailureRate: 0.5}}

func TestParseSpec(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		spec      string
		wantTypes []string
		wantErr   string
	}{
		{"http and demo", "email=http:https://mailer.internal/send; test=demo", []string{"email", "test"}, ""},
		{"missing", "", nil, "is empty"},
		{"only separators", ";;", nil, "names no handler"},
		{"no kind", "email", nil, `entry 1 "email": want TYPE=http:URL or TYPE=demo`},
		{"unknown kind", "email=smtp:x", nil, `unknown handler "smtp"`},
		{"bad url", "email=http:not-a-url", nil, "type email"},
		{"type twice", "email=demo;email=demo", nil, "type email is named twice"},
		{"type twice, other handlers", "email=demo;email=http:https://x.example/", nil, "type email is named twice"},
		{"invalid type", "em.ail=demo", nil, `entry 1: invalid event field "type": "em.ail" contains '.'`},
		{"invalid second type", "email=demo;a*b=demo", nil, `entry 2: invalid event field "type"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSpec(tt.spec, specOptions)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Len(t, got, len(tt.wantTypes))
			for _, typ := range tt.wantTypes {
				require.NotNil(t, got[typ], typ)
			}
		})
	}
	_, err := ParseSpec("x=demo", SpecOptions{Demo: DemoConfig{FailureRate: 2}})
	require.ErrorContains(t, err, "FailureRate")
}

// A URL's credentials never reach ParseSpec's errors, wherever the
// operator put the URL.
func TestParseSpecRedacts(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, spec string }{
		{"no type", "https://alice:S3cretPw@hooks.example/x"},
		{"URL as the type", "https://alice:S3cretPw@hooks.example/?a=demo"},
		{"http: forgotten", "email=https://alice:S3cretPw@hooks.example/"},
		{"token without http:", "email=S3cretPw@hooks.example"},
		{"bad scheme", "email=http:ftp://alice:S3cretPw@hooks.example/"},
		{"unparsable", "email=http:http://alice:S3cretPw@[hooks"},
		{"no host", "email=http:http://S3cretPw@"},
		{"secret option", "email=http:ftp://hooks.example/?token=S3cretPw"},
		{"invalid type after a URL", "email=http:https://alice:S3cretPw@hooks.example/;em.ail=demo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseSpec(tt.spec, specOptions)
			require.Error(t, err)
			require.NotContains(t, err.Error(), "S3cret")
			require.NotContains(t, err.Error(), "alice")
		})
	}
}

// FuzzParseSpec: any spec gives valid types with handlers, or an error
// that quotes no credential of the URLs in it; never a panic.
func FuzzParseSpec(f *testing.F) {
	for _, seed := range []string{
		"email=http:https://mailer.internal/send;test=demo", "email=demo;email=demo", "em.ail=demo",
		"email=http:https://alice:S3cretPw@hooks.example/", "https://alice:S3cretPw@hooks.example/?a=demo",
		"email=S3cretPw@hooks.example", "email=http:http://alice:S3cretPw@[hooks", ";;", "=", "a=", "=demo",
		"email=http:ftp://hooks.example/?token=S3cretPw", "a=http:", "a=demo:x", " a = demo ; b=http:http://h:1/ ",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		got, err := ParseSpec(spec, specOptions)
		if err != nil {
			if got != nil {
				t.Fatalf("ParseSpec(%q) returned handlers with an error", spec)
			}
			for _, s := range specSecrets(spec) {
				if !strings.Contains(err.Error(), s) {
					continue
				}
				// The secret's text may also arise from around it (a host
				// after a masked '@', an escaped space): only a leak if a
				// disguised secret in its place shows too.
				d := disguise(s)
				if d == s {
					continue // too little of it to tell apart
				}
				if _, err := ParseSpec(strings.Replace(spec, s, d, 1), specOptions); err != nil && strings.Contains(err.Error(), d) {
					t.Fatalf("ParseSpec(%q): the error %q quotes the secret %q", spec, err, s)
				}
			}
			return
		}
		if len(got) == 0 {
			t.Fatalf("ParseSpec(%q) returned no handler and no error", spec)
		}
		for typ, h := range got {
			if err := event.ValidateType(typ); err != nil || h == nil {
				t.Fatalf("ParseSpec(%q) returned the type %q (%v) with handler %v", spec, typ, err, h != nil)
			}
		}
	})
}

// specSecrets are the credentials of the URLs of a spec (after '=' and
// after "http:"), the ones long enough to tell apart and found nowhere
// else in the spec.
func specSecrets(spec string) []string {
	var out []string
	for _, part := range strings.Split(spec, ";") {
		// Where a URL may be: the whole entry without '=', or what follows
		// the '=' (and "http:").
		u := strings.TrimSpace(part)
		if _, rest, ok := strings.Cut(part, "="); ok {
			u = strings.TrimSpace(rest)
			if kind, arg, ok := strings.Cut(u, ":"); ok && strings.TrimSpace(kind) == "http" {
				u = arg
			}
		}
		{
			for _, s := range redact.Secrets(u) {
				if len(s) < 6 {
					continue
				}
				if uu, err := url.PathUnescape(s); err == nil && uu != s {
					continue // checked raw
				}
				if strings.Count(spec, s) == strings.Count(part, s) && strings.Count(part, s) == 1 && !strings.HasPrefix(strings.TrimSpace(part), s) {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// disguise replaces the letters and digits of s with a pattern no input
// holds by chance, keeping its punctuation, and so its place in a URL.
func disguise(s string) string {
	b := []byte(s)
	n := 0
	for i, c := range b {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b[i] = "Qz"[n%2]
			n++
		}
	}
	if n < 4 {
		return s
	}
	return string(b)
}
