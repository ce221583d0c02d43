// Package redact hides credentials in connection strings and URLs before
// they reach a log line, an error or a help text. It is the one place that
// decides what counts as a secret: every command, store and handler calls
// it, so a fix here is a fix everywhere.
//
// It never parses strictly: an operator's typo (an unescaped '@' or '%' in
// a password, a missing bracket) is exactly when a connection string ends
// up in an error, so the rules are conservative and work on the raw text.
package redact

import (
	"errors"
	"net/url"
	"strings"
)

// Mask stands for a hidden value.
const Mask = "xxxxx"

// URL returns s, a URL, a connection string (mongodb://, mongodb+srv://,
// nats://, http://, ...) or a comma-separated list of them, with every
// value that could be a credential replaced by Mask:
//
//   - the user information, all of it (before the last '@' of each URL):
//     a user name alone is often a token (nats://TOKEN@host), and a
//     password may hold unescaped '@', '/', '?' or ':' characters;
//   - the values of query options that hold secrets (password=, token=,
//     tlsCertificateKeyFilePassword, its legacy alias
//     sslClientCertificateKeyPassword, authMechanismProperties, ...), and
//     options without a value;
//   - a port that is not a number (nats://user:secret, the '@' missing);
//   - all of a string that holds a "://" but does not start with a scheme
//     ("=nats://user:secret"): nothing in it can be told apart.
//
// Schemes, hosts, numeric ports, paths and other options are kept, so the
// result still says where a command connects.
func URL(s string) string {
	var b strings.Builder
	for _, seg := range segments(s) {
		b.WriteString(seg.redacted())
	}
	return b.String()
}

// Error returns err with every secret of the connection strings conns
// removed from its message (see URL for what counts as a secret, and Text
// for how a message is cleaned): a driver's parse error may quote the
// whole string, a part of it ("invalid URL escape "%zz""), or an option's
// value. The text of a *url.Error's URL and of a url.EscapeError is masked
// too. The result wraps err, so errors.Is and
// errors.As still see the causes; only its message changes. Error(nil)
// is nil.
func Error(err error, conns ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := Text(msg, conns...)
	var esc url.EscapeError
	if errors.As(err, &esc) && len(esc) > 0 {
		clean = strings.ReplaceAll(clean, string(esc), Mask)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) && uerr.URL != "" {
		clean = strings.ReplaceAll(clean, uerr.URL, URL(uerr.URL))
	}
	if clean == msg {
		return err
	}
	return &redacted{msg: clean, err: err}
}

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

// Text masks in msg every secret of the connection strings conns: each
// whole connection string, each whole secret (raw or unescaped), and each
// word of msg of three characters or more that is part of a secret (a
// driver quoting a piece of a badly escaped password).
func Text(msg string, conns ...string) string {
	var secrets []string
	for _, c := range conns {
		if c != "" && strings.Contains(msg, c) {
			msg = strings.ReplaceAll(msg, c, URL(c))
		}
		secrets = append(secrets, Secrets(c)...)
	}
	for _, s := range secrets {
		if len(s) >= minWord {
			msg = strings.ReplaceAll(msg, s, Mask)
		}
	}
	if len(secrets) == 0 {
		return msg
	}
	return maskWords(msg, secrets)
}

// minWord is the shortest word of a message that Text masks for being part
// of a secret: shorter ones would mangle ordinary words for little gain.
const minWord = 3

// wordDelimiters end a word of a message; characters that connection
// strings use inside their parts ('@', '/', '%', '=') do not.
const wordDelimiters = " \t\r\n\"'`:,;()[]{}<>"

// maskWords replaces every word of msg that is at least minWord bytes long
// and occurs in one of the secrets with Mask.
func maskWords(msg string, secrets []string) string {
	var b strings.Builder
	for len(msg) > 0 {
		i := strings.IndexAny(msg, wordDelimiters)
		if i < 0 {
			i = len(msg)
		}
		word := msg[:i]
		if len(word) >= minWord && inAny(word, secrets) {
			word = Mask
		}
		b.WriteString(word)
		if i < len(msg) {
			b.WriteByte(msg[i])
			i++
		}
		msg = msg[i:]
	}
	return b.String()
}

func inAny(word string, secrets []string) bool {
	for _, s := range secrets {
		if strings.Contains(s, word) {
			return true
		}
	}
	return false
}

// Secrets returns the values URL hides in s, raw and unescaped, for
// scrubbing text that may quote them.
func Secrets(s string) []string {
	var out []string
	add := func(v string) {
		if v == "" {
			return
		}
		out = append(out, v)
		if u, err := url.PathUnescape(v); err == nil && u != v {
			out = append(out, u)
		}
		if u, err := url.QueryUnescape(v); err == nil && u != v {
			out = append(out, u)
		}
	}
	for _, seg := range segments(s) {
		if body, _, ok := seg.opaque(); ok {
			_, after, _ := strings.Cut(body, "://")
			add(after)
			continue
		}
		p := seg.parse()
		add(p.userinfo)
		if user, pass, ok := strings.Cut(p.userinfo, ":"); ok {
			add(user) // a user name may be a key (https://KEY:@api.example.com)
			add(pass)
		}
		for _, h := range p.badPorts {
			add(h)
		}
		add(p.opaque)
		for _, q := range p.params {
			switch {
			case q.secret:
				add(q.value)
			case nested(q.value) != "":
				out = append(out, Secrets(nested(q.value))...)
			}
		}
	}
	return out
}

// segment is one URL of a list: the text from its scheme (or the start of
// the string) to the next URL's scheme, separators included.
type segment string

// segments splits s where a new URL starts: at the start, and after a
// comma (and spaces) that a scheme follows. A "scheme://" anywhere else,
// say inside a password, does not start a URL.
func segments(s string) []segment {
	var out []segment
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] != ',' {
			continue
		}
		j := i + 1
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		if schemeAt(s[j:]) > 0 {
			out = append(out, segment(s[start:j]))
			start = j
			i = j - 1
		}
	}
	return append(out, segment(s[start:]))
}

// schemeAt returns the length of the "scheme://" s starts with, or 0.
func schemeAt(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && strings.HasPrefix(s[i:], "://"):
			return i + 3
		default:
			return 0
		}
	}
	return 0
}

// opaque reports whether the segment holds a "://" without starting with a
// scheme ("=nats://user:pw", "x https://..."): no part of it can be told
// apart, so all of it is hidden. It returns the segment without its list
// separator, and the separator.
func (seg segment) opaque() (body, tail string, ok bool) {
	s := string(seg)
	if schemeAt(s) > 0 || !strings.Contains(s, "://") {
		return "", "", false
	}
	body = strings.TrimRight(s, ", \t")
	return body, s[len(body):], true
}

// parsed is a segment cut into its parts, each kept as raw text.
type parsed struct {
	scheme   string // "nats://", or "" when there is none
	userinfo string // before the last '@', "" when there is no '@'
	hasAt    bool
	hosts    string // the host list, up to the first '/', '?' or '#'
	opaque   string // hosts and path when they hold another "://"
	badPorts []string
	rest     string // path and fragment, between hosts and the query
	hasQuery bool
	params   []param
	tail     string // what follows the query (a list separator)
}

type param struct {
	key, value string
	hasValue   bool
	secret     bool
	sep        byte // the separator before it: '?', '&' or ';'
}

func (seg segment) parse() parsed {
	s := string(seg)
	var p parsed
	if n := schemeAt(s); n > 0 {
		p.scheme, s = s[:n], s[n:]
	}
	// A list separator stays out of the last option's value.
	if t := strings.TrimRight(s, ", \t"); len(t) < len(s) {
		s, p.tail = t, s[len(t):]
	}
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		p.userinfo, p.hasAt, s = s[:at], true, s[at+1:]
	}
	if pre, _, _ := strings.Cut(s, "?"); strings.Contains(pre, "://") {
		// Another URL where the host and path should be (a list without
		// its comma, an operator's typo): none of it can be told apart.
		p.opaque = pre
		s = s[len(pre):]
	} else {
		end := strings.IndexAny(s, "/?#")
		if end < 0 {
			end = len(s)
		}
		p.hosts, s = s[:end], s[end:]
	}
	for _, h := range strings.Split(p.hosts, ",") {
		if port, ok := portOf(strings.TrimSpace(h)); ok && !numeric(port) {
			p.badPorts = append(p.badPorts, port)
		}
	}
	q := strings.IndexByte(s, '?')
	if q < 0 {
		p.rest = s
		return p
	}
	p.rest, s, p.hasQuery = s[:q], s[q+1:], true
	sep := byte('?')
	for {
		i := strings.IndexAny(s, "&;")
		field := s
		if i >= 0 {
			field = s[:i]
		}
		k, v, ok := strings.Cut(field, "=")
		p.params = append(p.params, param{key: k, value: v, hasValue: ok, secret: !ok || secretKey(k), sep: sep})
		if i < 0 {
			break
		}
		sep, s = s[i], s[i+1:]
	}
	return p
}

func (seg segment) redacted() string {
	if body, tail, ok := seg.opaque(); ok {
		if body == "" {
			return tail
		}
		return Mask + tail
	}
	p := seg.parse()
	var b strings.Builder
	b.WriteString(p.scheme)
	if p.hasAt {
		b.WriteString(Mask + "@")
	}
	if p.opaque != "" {
		b.WriteString(Mask)
	}
	hosts := strings.Split(p.hosts, ",")
	if p.opaque != "" {
		hosts = nil
	}
	for i, h := range hosts {
		if i > 0 {
			b.WriteByte(',')
		}
		if port, ok := portOf(strings.TrimSpace(h)); ok && !numeric(port) {
			h = h[:strings.LastIndexByte(h, ':')+1] + Mask
		}
		b.WriteString(h)
	}
	b.WriteString(p.rest)
	if p.hasQuery {
		for _, q := range p.params {
			b.WriteByte(q.sep)
			switch {
			case !q.hasValue && q.key == "":
			case !q.hasValue:
				b.WriteString(Mask)
			case q.secret:
				b.WriteString(q.key + "=" + Mask)
			case nested(q.value) != "":
				// A URL in an option (a redirect, a callback) has its own
				// credentials.
				b.WriteString(q.key + "=" + URL(nested(q.value)))
			default:
				b.WriteString(q.key + "=" + q.value)
			}
		}
	}
	b.WriteString(p.tail)
	return b.String()
}

// nested returns an option's value, unescaped, when it holds a URL or
// user information of its own; "" otherwise.
func nested(v string) string {
	if u, err := url.QueryUnescape(v); err == nil {
		v = u
	}
	if strings.Contains(v, "://") || strings.Contains(v, "@") {
		return v
	}
	return ""
}

// portOf returns what follows the host's last ':', outside an IPv6
// literal's brackets.
func portOf(h string) (string, bool) {
	i := strings.LastIndexByte(h, ':')
	if i < 0 || strings.LastIndexByte(h, ']') > i {
		return "", false
	}
	if strings.HasPrefix(h, "[") && !strings.Contains(h, "]") {
		// "[::1" : an unterminated IPv6 literal has no port.
		return "", false
	}
	return h[i+1:], true
}

func numeric(s string) bool {
	if s == "" {
		return true // "host:" is harmless
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// secretWords mark an option whose value is a secret, compared with the
// option's name lower-cased and without '_', '-' and '.'.
var secretWords = []string{"password", "passwd", "pwd", "secret", "token", "credential", "signature", "apikey", "accesskey", "privatekey", "sessionkey", "authmechanismproperties", "authorization"}

// secretNames are whole option names whose value is a secret.
var secretNames = []string{"pass", "key", "sig", "auth", "code", "jwt", "nkey", "seed"}

// secretKey reports whether an option's value is a secret:
// tlsCertificateKeyFilePassword and sslClientCertificateKeyPassword,
// authMechanismProperties (it carries AWS session tokens), password=,
// token=, api keys, signatures of presigned URLs, and the like.
func secretKey(k string) bool {
	if u, err := url.QueryUnescape(k); err == nil {
		k = u
	}
	k = strings.ToLower(k)
	k = strings.NewReplacer("_", "", "-", "", ".", "", " ", "").Replace(k)
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	for _, n := range secretNames {
		if k == n {
			return true
		}
	}
	return false
}
