package redact_test

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/retrigger/retrigger/shared/redact"
)

func TestURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
		secrets        []string // must not appear in the output
	}{
		{"no credentials", "mongodb://localhost:27017/?replicaSet=rs0", "mongodb://localhost:27017/?replicaSet=rs0", nil},
		{"user and password", "mongodb://alice:s3cret@db:27017/retrigger", "mongodb://xxxxx@db:27017/retrigger", []string{"s3cret", "alice"}},
		{"user only", "mongodb://alice@db:27017", "mongodb://xxxxx@db:27017", []string{"alice"}},
		{"nats token", "nats://S3cretT0ken@nats1:4222", "nats://xxxxx@nats1:4222", []string{"S3cretT0ken"}},
		{"nats user and password", "nats://user:NatsS3cret@nats1:4222", "nats://xxxxx@nats1:4222", []string{"NatsS3cret"}},
		{"api key as user name", "https://sk_live_abc:@api.example.com/v1", "https://xxxxx@api.example.com/v1", []string{"sk_live_abc"}},
		{"several hosts", "mongodb://alice:pw@h1:27017,h2:27017,h3:27017/?replicaSet=rs0",
			"mongodb://xxxxx@h1:27017,h2:27017,h3:27017/?replicaSet=rs0", []string{"alice"}},
		{"srv", "mongodb+srv://alice:pw0rd1@cluster0.example.net/?retryWrites=true",
			"mongodb+srv://xxxxx@cluster0.example.net/?retryWrites=true", []string{"pw0rd1"}},
		{"escaped characters in the password", "mongodb://alice:p%40ss%3Aw%2Frd@db/", "mongodb://xxxxx@db/", []string{"p%40ss", "w%2Frd"}},
		{"unescaped @ in the password", "mongodb://alice:p@ss@db/", "mongodb://xxxxx@db/", []string{"p@ss"}},
		{"unescaped / and ? in the password", "mongodb://alice:pa/ss?wd@db/?tls=true", "mongodb://xxxxx@db/?tls=true", []string{"pa/ss?wd", "ss?wd"}},
		{"badly escaped password", "mongodb://alice:p%zzword@db/", "mongodb://xxxxx@db/", []string{"%zz", "zzword"}},
		{"secret options", "mongodb://db/?tls=true&tlsCertificateKeyFilePassword=pw123&authMechanismProperties=AWS_SESSION_TOKEN:tok123",
			"mongodb://db/?tls=true&tlsCertificateKeyFilePassword=xxxxx&authMechanismProperties=xxxxx", []string{"pw123", "tok123"}},
		{"legacy ssl password option", "mongodb://db/?ssl=true&sslClientCertificateKeyPassword=legacy1",
			"mongodb://db/?ssl=true&sslClientCertificateKeyPassword=xxxxx", []string{"legacy1"}},
		{"option names in any case", "mongodb://db/?TLSCERTIFICATEKEYFILEPASSWORD=pw123", "mongodb://db/?TLSCERTIFICATEKEYFILEPASSWORD=xxxxx", []string{"pw123"}},
		{"password= and token=", "https://hooks.example.com/x?password=hunter22&token=t0k3n99&team=a",
			"https://hooks.example.com/x?password=xxxxx&token=xxxxx&team=a", []string{"hunter22", "t0k3n99"}},
		{"option without a value", "https://hooks.example.com/x?SECRETVALUE&a=1", "https://hooks.example.com/x?xxxxx&a=1", []string{"SECRETVALUE"}},
		{"nats list", "nats://u:pw1@h1:4222,nats://TOKEN2@h2:4222, nats://h3:4222",
			"nats://xxxxx@h1:4222,nats://xxxxx@h2:4222, nats://h3:4222", []string{"pw1", "TOKEN2"}},
		{"nats list without schemes", "h1:4222,h2:4222", "h1:4222,h2:4222", nil},
		{"unparsable, user and password", "nats://user:NatsS3cret@[bad", "nats://xxxxx@[bad", []string{"NatsS3cret", "Nat"}},
		{"unparsable, no @", "nats://user:NatsS3cret", "nats://user:xxxxx", []string{"NatsS3cret", "S3c"}},
		{"scheme inside a password", "nats://u:abcdef://x@h", "nats://xxxxx@h", []string{"abcdef"}},
		{"list separator inside a password", "nats://u:abc,nats://def@h", "nats://u:xxxxx,nats://xxxxx@h", []string{"abc", "def"}},
		{"ipv6", "nats://[::1]:4222", "nats://[::1]:4222", nil},
		{"unterminated ipv6", "nats://[::1", "nats://[::1", nil},
		{"not a URL", "localhost", "localhost", nil},
		{"no scheme", "alice:pw@db:27017", "xxxxx@db:27017", []string{"alice", "pw@"}},
		{"empty", "", "", nil},
		{"text before the scheme", "=nats://user:NatsS3cret", "xxxxx", []string{"NatsS3cret", "user"}},
		{"a URL where the host should be", "nats://h1:4222,x nats://u:pw1234", "nats://xxxxx", []string{"pw1234"}},
		{"a URL in an option", "https://hooks.example.com/x?next=https://u:pw1234@h2/&a=1", "https://xxxxx@h2/&a=1", []string{"pw1234"}}, // the last '@' wins
		{"an escaped URL in an option", "https://hooks.example.com/x?next=https%3A%2F%2Fu%3Apw1234%40h2%2F", "https://hooks.example.com/x?next=https://xxxxx@h2/", []string{"pw1234"}},
		{"at sign in a query", "https://example.com/x?to=a@b.example", "https://xxxxx@b.example", []string{"to=a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := redact.URL(tt.in)
			require.Equal(t, tt.want, got)
			for _, s := range tt.secrets {
				require.NotContains(t, got, s)
			}
		})
	}
}

func TestError(t *testing.T) {
	t.Parallel()
	badEscape := "mongodb://alice:p%zzword@db/"
	_, parseErr := connstring.ParseAndValidate(badEscape)
	require.ErrorContains(t, parseErr, "%zz", "the driver quotes part of the password")
	_, connectErr := mongo.Connect(options.Client().ApplyURI(badEscape))
	require.Error(t, connectErr)
	badOption := "mongodb://db/?tlsCertificateKeyFilePassword=S3cr%zzet"
	_, optionErr := connstring.ParseAndValidate(badOption)
	require.ErrorContains(t, optionErr, "S3cr", "the driver quotes the option's value")
	natsURL := "nats://user:NatsS3cret@[bad"
	_, urlErr := url.Parse(natsURL)
	require.ErrorContains(t, urlErr, "NatsS3cret")

	tests := []struct {
		name    string
		err     error
		conn    string
		secrets []string
		keep    string // still in the message
	}{
		{"driver parse error", parseErr, badEscape, []string{"%zz", "zzw", "alice"}, "invalid password"},
		{"driver connect error", connectErr, badEscape, []string{"%zz", "zzw"}, ""},
		{"driver option error", optionErr, badOption, []string{"S3cr", "%zz", "et"}, "invalid option value"},
		{"url error", fmt.Errorf("connecting: %w", urlErr), natsURL, []string{"NatsS3cret", "S3c", "user:"}, "missing ']' in host"},
		{"a short escape", url.EscapeError("%z"), "mongodb://a:bc%z@h", []string{"%z"}, "invalid URL escape"},
		{"no secret", errors.New("connection refused"), "mongodb://db/", nil, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := redact.Error(tt.err, tt.conn)
			require.Error(t, got)
			require.ErrorIs(t, got, tt.err, "the causes stay in the chain")
			for _, s := range tt.secrets {
				require.NotContains(t, got.Error(), s)
			}
			require.Contains(t, got.Error(), tt.keep)
		})
	}
	require.NoError(t, redact.Error(nil, "x"))
}

// FuzzURL checks the property that matters: a secret placed anywhere a
// connection string carries one never shows in the output, escaped as it
// should be or not, in a single URL or a list.
func FuzzURL(f *testing.F) {
	for _, seed := range []struct {
		scheme, user, secret, host, option string
		escape, list                       bool
	}{
		{"nats", "user", "NatsS3cret", "[bad", "", false, false},
		{"nats", "", "S3cretT0ken", "h:4222", "", false, true},
		{"mongodb", "alice", "p%zzword", "db", "", false, false},
		{"mongodb+srv", "alice", "pa/ss?wd@x", "cluster0.example.net", "", false, false},
		{"mongodb", "alice", "pa/ss?wd@x", "h1,h2", "tlsCertificateKeyFilePassword", true, false},
		{"mongodb", "", "AWS_SESSION_TOKEN:abc", "db", "authMechanismProperties", true, false},
		{"mongodb", "", "legacy1", "db", "sslClientCertificateKeyPassword", true, false},
		{"https", "", "hunter22", "example.com", "password", true, false},
		{"https", "", "t0k3n99", "example.com", "token", false, true},
		{"nats", "u", "abc,nats://def", "h", "", false, false},
		{"nats", "u", "x://y", "h", "", false, true},
	} {
		f.Add(seed.scheme, seed.user, seed.secret, seed.host, seed.option, seed.escape, seed.list)
	}
	f.Fuzz(func(t *testing.T, scheme, user, secret, host, option string, escape, list bool) {
		if len(secret) < 6 || strings.ContainsAny(host, "@") || strings.Contains(host, secret) ||
			strings.Contains(scheme, secret) || strings.Contains(option, secret) {
			t.Skip("the secret must be long enough to be told apart, and only where secrets go")
		}
		if option != "" && !knownSecretOption(option) {
			t.Skip()
		}
		build := func(secret string) string {
			var in string
			switch {
			case option != "":
				// An option that holds a secret; its value escaped as a
				// query value must be.
				in = scheme + "://" + host + "/?appName=x&" + option + "=" + url.QueryEscape(secret)
			case escape:
				in = scheme + "://" + url.PathEscape(user) + ":" + url.PathEscape(secret) + "@" + host
			case user == "":
				in = scheme + "://" + secret + "@" + host // a token, unescaped
			default:
				in = scheme + "://" + user + ":" + secret + "@" + host // a careless operator
			}
			if list {
				in = "nats://other:4222," + in + ",nats://h3:4222"
			}
			return in
		}
		// shows reports whether the output for secret shows it, raw or
		// escaped, in the URL or in a message quoting it.
		shows := func(secret string) (in, out string, leak bool) {
			in = build(secret)
			out = redact.URL(in) + " " + redact.Text(`error parsing "`+in+`": bad`, in)
			for _, s := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
				if strings.Contains(out, s) {
					return in, out, true
				}
			}
			return in, out, false
		}
		in, out, leak := shows(secret)
		if !leak {
			return
		}
		// The secret's text may also arise from the parts around it (a
		// host after a masked '@', an escaped space): only a leak if a
		// disguised secret, placed alike, shows too.
		d := disguise(secret)
		if d == secret {
			return // too little of it to tell apart
		}
		if _, _, leak := shows(d); !leak {
			return
		}
		t.Fatalf("URL(%q) shows the secret %q: %q", in, secret, out)
	})
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
		return s // too little to tell apart
	}
	return string(b)
}

func knownSecretOption(o string) bool {
	for _, k := range []string{"tlsCertificateKeyFilePassword", "sslClientCertificateKeyPassword", "authMechanismProperties", "password", "token", "TOKEN", "apiKey", "X-Amz-Signature"} {
		if o == k {
			return true
		}
	}
	return false
}
