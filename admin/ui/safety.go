package ui

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// The session token: a random value in a cookie, signed with the
// server's secret, that every form sends back as a field (a signed
// double-submit cookie). Another site can make a browser send the cookie
// but cannot read it, so it cannot put the value in the form; the
// signature stops a value planted by a sibling subdomain. POSTs are also
// refused when the browser says they come from another origin (Go's
// http.CrossOriginProtection: Sec-Fetch-Site, or Origin against Host).

const (
	csrfCookie = "retrigger_ui_session"
	csrfField  = "csrf"
	tokenBytes = 32
)

// errForbidden: a write refused.
var errForbidden = errors.New("forbidden")

type csrf struct {
	secret []byte
}

func (c *csrf) sign(token []byte) string {
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte("retrigger ui session\x00"))
	m.Write(token)
	return base64.RawURLEncoding.EncodeToString(token) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// valid returns the token of a well-signed cookie value.
func (c *csrf) valid(value string) (string, bool) {
	tok, _, ok := strings.Cut(value, ".")
	if !ok {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) != tokenBytes {
		return "", false
	}
	if !hmac.Equal([]byte(c.sign(raw)), []byte(value)) {
		return "", false
	}
	return tok, true
}

// token returns the session's token for a form, setting the cookie when
// the request has no valid one.
func (c *csrf) token(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(csrfCookie); err == nil {
		if tok, ok := c.valid(ck.Value); ok {
			return tok
		}
	}
	raw := make([]byte, tokenBytes)
	_, _ = rand.Read(raw)
	value := c.sign(raw)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: value, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"})
	tok, _, _ := strings.Cut(value, ".")
	return tok
}

// check refuses a POST whose form does not carry the token of its
// cookie.
func (c *csrf) check(r *http.Request) error {
	ck, err := r.Cookie(csrfCookie)
	if err != nil {
		return fmt.Errorf("%w: no session cookie: load the page again and resubmit", errForbidden)
	}
	tok, ok := c.valid(ck.Value)
	if !ok {
		return fmt.Errorf("%w: the session cookie is not this server's (was it restarted?): load the page again and resubmit", errForbidden)
	}
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue(csrfField)), []byte(tok)) != 1 {
		return fmt.Errorf("%w: the form's session token does not match: load the page again and resubmit", errForbidden)
	}
	return nil
}

// protect refuses cross-origin writes before any handler runs; the
// handlers that write call check.
func (c *csrf) protect(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "forbidden: a cross-origin request (the page that sent it is not this web view's)", http.StatusForbidden)
	}))
	return cop.Handler(next)
}

// Users are the accounts of HTTP basic auth.
type Users struct {
	users map[string]credential
	realm string
}

type credential struct {
	plain  [sha256.Size]byte // SHA-256 of a plain password
	bcrypt []byte            // or a bcrypt hash
}

// LoadUsers reads a basic-auth file: one "user:password" a line, where
// the password is plain text or a bcrypt hash ($2a$, $2b$, $2y$, as
// `htpasswd -B` writes). Blank lines and lines starting with # are
// skipped.
func LoadUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadUsers(f)
}

// ReadUsers reads the lines of a basic-auth file (see LoadUsers).
func ReadUsers(r io.Reader) (*Users, error) {
	u := &Users{users: map[string]credential{}, realm: "retrigger"}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, pass, ok := strings.Cut(line, ":")
		if !ok || name == "" || pass == "" {
			return nil, fmt.Errorf("line %d: want user:password", n)
		}
		var c credential
		if strings.HasPrefix(pass, "$2a$") || strings.HasPrefix(pass, "$2b$") || strings.HasPrefix(pass, "$2y$") {
			if _, err := bcrypt.Cost([]byte(pass)); err != nil {
				return nil, fmt.Errorf("line %d: a bcrypt hash that does not read: %v", n, err)
			}
			c.bcrypt = []byte(pass)
		} else if strings.HasPrefix(pass, "$") || strings.HasPrefix(pass, "{SHA}") {
			return nil, fmt.Errorf("line %d: only plain passwords and bcrypt hashes (htpasswd -B) are understood", n)
		} else {
			c.plain = sha256.Sum256([]byte(pass))
		}
		if _, dup := u.users[name]; dup {
			return nil, fmt.Errorf("line %d: user %q twice", n, name)
		}
		u.users[name] = c
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(u.users) == 0 {
		return nil, errors.New("no user in the file")
	}
	return u, nil
}

// dummy keeps the time of a login for an unknown user like a known one's.
var dummy = sha256.Sum256([]byte("no such user"))

// Check reports whether the password is the user's, in constant time for
// plain passwords.
func (u *Users) Check(name, password string) bool {
	c, ok := u.users[name]
	if ok && c.bcrypt != nil {
		return bcrypt.CompareHashAndPassword(c.bcrypt, []byte(password)) == nil
	}
	sum := sha256.Sum256([]byte(password))
	want := dummy
	if ok {
		want = c.plain
	}
	return subtle.ConstantTimeCompare(sum[:], want[:]) == 1 && ok
}

type userKey struct{}

func (u *Users) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, pass, ok := r.BasicAuth()
		if !ok || !u.Check(name, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+u.realm+`", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, name)))
	})
}

// userOf is the basic-auth user of r, or "".
func userOf(r *http.Request) string {
	name, _ := r.Context().Value(userKey{}).(string)
	return name
}
