package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/retry"
)

// received is a request as the test server saw it.
type received struct {
	header http.Header
	body   []byte
	user   string
	pass   string
}

// bundle is what an HTTP handler test needs: a server, the requests it
// received, and a handler pointed at it.
type bundle struct {
	srv      *httptest.Server
	requests chan received
	handler  consumer.Handler
}

// setup starts a server that records each request and answers with
// respond, and builds an HTTP handler for it from cfg (URL and Client
// default to the server's).
func setup(t *testing.T, cfg HTTPConfig, respond http.HandlerFunc) *bundle {
	t.Helper()
	b := &bundle{requests: make(chan received, 16)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		user, pass, _ := r.BasicAuth()
		b.requests <- received{header: r.Header.Clone(), body: body, user: user, pass: pass}
		respond(w, r)
	}))
	t.Cleanup(b.srv.Close) // also closes the idle connections of srv.Client()
	if cfg.URL == "" {
		cfg.URL = b.srv.URL
	}
	if cfg.Client == nil {
		cfg.Client = b.srv.Client()
	}
	h, err := HTTP(cfg)
	require.NoError(t, err)
	b.handler = h
	return b
}

func respondWith(code int, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

// testEvent is an event with an ObjectID, a payload of several BSON types,
// and two failed attempts behind it.
func testEvent(t *testing.T) *consumer.Event {
	t.Helper()
	payload, err := bson.Marshal(bson.D{
		{Key: "orderId", Value: int32(42)},
		{Key: "total", Value: 12.5},
		{Key: "email", Value: "a@example.com"},
		{Key: "at", Value: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		{Key: "items", Value: bson.A{"x", "y"}},
	})
	require.NoError(t, err)
	return &consumer.Event{
		ID:       rawValue(t, bson.NewObjectID()),
		Type:     "order.created",
		Payload:  payload,
		Attempts: 2,
		Version:  3,
	}
}

func rawValue(t *testing.T, v any) bson.RawValue {
	t.Helper()
	typ, data, err := bson.MarshalValue(v)
	require.NoError(t, err)
	return bson.RawValue{Type: typ, Value: data}
}

func TestHTTPStatus(t *testing.T) {
	t.Parallel()
	const body = `{"error":"down"}`
	tests := []struct {
		name          string
		code          int
		body          string
		wantErr       bool
		wantPermanent bool
	}{
		{name: "200 ok", code: http.StatusOK, body: body},
		{name: "201 created", code: http.StatusCreated},
		{name: "204 no content", code: http.StatusNoContent},
		{name: "408 retryable", code: http.StatusRequestTimeout, body: body, wantErr: true},
		{name: "429 retryable", code: http.StatusTooManyRequests, body: body, wantErr: true},
		{name: "500 retryable", code: http.StatusInternalServerError, body: body, wantErr: true},
		{name: "502 retryable", code: http.StatusBadGateway, body: body, wantErr: true},
		{name: "503 retryable", code: http.StatusServiceUnavailable, body: body, wantErr: true},
		{name: "400 permanent", code: http.StatusBadRequest, body: body, wantErr: true, wantPermanent: true},
		{name: "401 permanent", code: http.StatusUnauthorized, body: body, wantErr: true, wantPermanent: true},
		{name: "404 permanent", code: http.StatusNotFound, body: body, wantErr: true, wantPermanent: true},
		{name: "422 permanent", code: http.StatusUnprocessableEntity, body: body, wantErr: true, wantPermanent: true},
		{name: "final 3xx permanent", code: http.StatusFound, body: body, wantErr: true, wantPermanent: true},
		{name: "304 permanent", code: http.StatusNotModified, wantErr: true, wantPermanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, HTTPConfig{}, respondWith(tt.code, tt.body))
			err := b.handler(t.Context(), testEvent(t))
			if !tt.wantErr {
				require.NoError(t, err)
				return
			}
			want := fmt.Sprintf("POST %s: %d %s", b.srv.URL, tt.code, http.StatusText(tt.code))
			if tt.body != "" {
				want += ": " + tt.body
			}
			require.EqualError(t, err, want)
			require.Equal(t, tt.wantPermanent, retry.IsPermanent(err))
			_, ok := retry.RetryAfter(err)
			require.False(t, ok, "no Retry-After was sent")
			var serr *StatusError
			require.ErrorAs(t, err, &serr)
			require.Equal(t, tt.code, serr.StatusCode)
			require.Equal(t, !tt.wantPermanent, serr.Retryable())
		})
	}
}

func TestHTTPRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name          string
		code          int
		retryAfter    string
		maxRetryAfter time.Duration
		wantDelay     time.Duration // 0: no delay hint
		wantPermanent bool
	}{
		{name: "429 seconds", code: http.StatusTooManyRequests, retryAfter: "7", wantDelay: 7 * time.Second},
		{name: "503 seconds", code: http.StatusServiceUnavailable, retryAfter: "120", wantDelay: 2 * time.Minute},
		{name: "408 seconds with spaces", code: http.StatusRequestTimeout, retryAfter: " 3 ", wantDelay: 3 * time.Second},
		{name: "http date", code: http.StatusServiceUnavailable,
			retryAfter: now.Add(30 * time.Second).Format(http.TimeFormat), wantDelay: 30 * time.Second},
		{name: "capped by MaxRetryAfter", code: http.StatusTooManyRequests, retryAfter: "100000",
			maxRetryAfter: time.Minute, wantDelay: time.Minute},
		{name: "capped by the default of 1h", code: http.StatusTooManyRequests, retryAfter: "86400", wantDelay: time.Hour},
		{name: "huge seconds capped", code: http.StatusTooManyRequests, retryAfter: "9223372036854775807", wantDelay: time.Hour},
		{name: "zero uses the backoff", code: http.StatusTooManyRequests, retryAfter: "0"},
		{name: "past date uses the backoff", code: http.StatusServiceUnavailable,
			retryAfter: now.Add(-time.Minute).Format(http.TimeFormat)},
		{name: "negative ignored", code: http.StatusTooManyRequests, retryAfter: "-5"},
		{name: "garbage ignored", code: http.StatusTooManyRequests, retryAfter: "soon"},
		{name: "ignored on a permanent status", code: http.StatusBadRequest, retryAfter: "7", wantPermanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := HTTPConfig{MaxRetryAfter: tt.maxRetryAfter, Now: func() time.Time { return now }}
			b := setup(t, cfg, respondWith(tt.code, "slow down", "Retry-After", tt.retryAfter))
			err := b.handler(t.Context(), testEvent(t))
			require.ErrorContains(t, err, fmt.Sprintf("%d %s: slow down", tt.code, http.StatusText(tt.code)))
			require.Equal(t, tt.wantPermanent, retry.IsPermanent(err))
			delay, ok := retry.RetryAfter(err)
			require.Equal(t, tt.wantDelay != 0, ok, "delay hint")
			require.Equal(t, tt.wantDelay, delay)
		})
	}
}

func TestHTTPRequest(t *testing.T) {
	t.Parallel()
	withStringID := func(id string) func(*consumer.Event) {
		return func(ev *consumer.Event) { ev.ID = rawValue(t, id) }
	}
	tests := []struct {
		name       string
		modify     func(*consumer.Event)
		wantID     string // "" for the hex of the ObjectID
		wantHeader string // Retrigger-Event-Id; "" for wantID
		wantRaw    string // the payload as sent; "" to check the test payload
		wantTry    string
	}{
		{name: "object id and payload", wantTry: "3"},
		{name: "first attempt", modify: func(ev *consumer.Event) { ev.Attempts = 0 }, wantTry: "1"},
		{name: "no payload", modify: func(ev *consumer.Event) { ev.Payload = nil }, wantRaw: "null", wantTry: "3"},
		{name: "string id", modify: withStringID("order-17"), wantID: "order-17", wantTry: "3"},
		{name: "string id with a newline", modify: withStringID("a\nb"), wantID: "a\nb",
			wantHeader: `"a\nb"`, wantTry: "3"},
		{name: "html in payload is not escaped",
			modify: func(ev *consumer.Event) {
				ev.Payload, _ = bson.Marshal(bson.D{{Key: "html", Value: "<b>&</b>"}})
			},
			wantRaw: `{"html":"<b>&</b>"}`, wantTry: "3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := HTTPConfig{Headers: map[string]string{
				"Authorization":   "Bearer token",
				"X-Tenant":        "acme",
				"Content-Type":    "text/plain", // must not win
				HeaderEventType:   "spoofed",    // must not win
				"x-lowercase-key": "canonicalised",
			}}
			b := setup(t, cfg, respondWith(http.StatusNoContent, ""))
			ev := testEvent(t)
			if tt.modify != nil {
				tt.modify(ev)
			}
			require.NoError(t, b.handler(t.Context(), ev))
			got := <-b.requests

			wantID := tt.wantID
			if wantID == "" {
				wantID = ev.ID.ObjectID().Hex()
			}
			wantHeader := tt.wantHeader
			if wantHeader == "" {
				wantHeader = wantID
			}
			require.Equal(t, "application/json", got.header.Get("Content-Type"))
			require.Equal(t, wantHeader, got.header.Get(HeaderEventID))
			require.Equal(t, "order.created", got.header.Get(HeaderEventType))
			require.Equal(t, tt.wantTry, got.header.Get(HeaderAttempt))
			require.Equal(t, "Bearer token", got.header.Get("Authorization"))
			require.Equal(t, "acme", got.header.Get("X-Tenant"))
			require.Equal(t, "canonicalised", got.header.Get("X-Lowercase-Key"))

			var body struct {
				ID      string          `json:"id"`
				Type    string          `json:"type"`
				Attempt json.Number     `json:"attempt"`
				Payload json.RawMessage `json:"payload"`
			}
			require.NoError(t, json.Unmarshal(got.body, &body), "body %s", got.body)
			require.Equal(t, wantID, body.ID)
			require.Equal(t, "order.created", body.Type)
			require.Equal(t, tt.wantTry, body.Attempt.String())
			if tt.wantRaw != "" {
				require.JSONEq(t, tt.wantRaw, string(body.Payload))
				require.Contains(t, string(got.body), tt.wantRaw, "sent verbatim")
				return
			}
			var payload map[string]any
			require.NoError(t, json.Unmarshal(body.Payload, &payload))
			require.Equal(t, map[string]any{
				"orderId": float64(42),
				"total":   12.5,
				"email":   "a@example.com",
				"at":      map[string]any{"$date": "2024-01-02T03:04:05Z"},
				"items":   []any{"x", "y"},
			}, payload)
		})
	}
}

func TestHTTPTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		defaultClient bool
	}{
		{name: "given client"},
		{name: "default client", defaultClient: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				// The server notices a closed connection, and ends the
				// request's context, only once the body has been read.
				_, _ = io.Copy(io.Discard, r.Body)
				<-r.Context().Done() // until the client gives up
			}))
			t.Cleanup(srv.Close)
			cfg := HTTPConfig{URL: srv.URL, Timeout: 50 * time.Millisecond}
			if !tt.defaultClient {
				cfg.Client = srv.Client()
			}
			h := newTestHTTP(t, cfg)

			err := h.handle(t.Context(), testEvent(t))
			require.ErrorContains(t, err, "POST "+srv.URL+": timed out after 50ms")
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.False(t, retry.IsPermanent(err))
			_, ok := retry.RetryAfter(err)
			require.False(t, ok)
		})
	}
}

func TestHTTPConnectionRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	client := srv.Client()
	srv.Close() // nothing listens on its address any more
	h, err := HTTP(HTTPConfig{URL: srv.URL, Client: client})
	require.NoError(t, err)

	err = h(t.Context(), testEvent(t))
	require.ErrorContains(t, err, "POST "+srv.URL+": ")
	require.ErrorContains(t, err, "connection refused")
	require.False(t, retry.IsPermanent(err))
}

func TestHTTPContextEnded(t *testing.T) {
	t.Parallel()
	b := setup(t, HTTPConfig{}, respondWith(http.StatusOK, ""))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	err := b.handler(ctx, testEvent(t))
	require.ErrorIs(t, err, context.Canceled)
	require.NotContains(t, err.Error(), "timed out", "the worker ended it, not our timeout")
	require.False(t, retry.IsPermanent(err))
}

func TestHTTPBodySnippet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		limit int
		body  string
		want  string
	}{
		{name: "cut at the limit", limit: 16, body: "0123456789abcdefXYZ", want: "0123456789abcdef…"},
		{name: "exactly the limit", limit: 16, body: "0123456789abcdef", want: "0123456789abcdef"},
		{name: "trimmed", limit: 16, body: "  \n down \n", want: "down"},
		{name: "cut and trimmed", limit: 8, body: "down    and out", want: "down…"},
		{name: "not inside a character", limit: 5, body: "ééé", want: "éé…"},
		{name: "default limit", body: strings.Repeat("a", 2000), want: strings.Repeat("a", 512) + "…"},
		{name: "empty body", limit: 16, body: "", want: ""},
		{name: "larger than the drain limit", limit: 4, body: strings.Repeat("b", 3*drainLimit), want: "bbbb…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, HTTPConfig{BodyLimit: tt.limit}, respondWith(http.StatusInternalServerError, tt.body))
			err := b.handler(t.Context(), testEvent(t))
			var serr *StatusError
			require.ErrorAs(t, err, &serr)
			require.Equal(t, tt.want, serr.Body)
			want := "POST " + b.srv.URL + ": 500 Internal Server Error"
			if tt.want != "" {
				want += ": " + tt.want
			}
			require.EqualError(t, err, want)
		})
	}
}

func TestHTTPRedactsUserinfo(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	refused := srv.URL
	srv.Close()

	tests := []struct {
		name     string
		userinfo string
		respond  http.HandlerFunc // nil: nothing listens
		wantUser string           // as the server decodes basic auth
		wantPass string
	}{
		{name: "status error", userinfo: "alice:s3cret",
			respond: respondWith(http.StatusInternalServerError, "boom"), wantUser: "alice", wantPass: "s3cret"},
		{name: "permanent status error", userinfo: "alice:s3cret",
			respond: respondWith(http.StatusUnauthorized, "who"), wantUser: "alice", wantPass: "s3cret"},
		{name: "token as user name", userinfo: "s3cret",
			respond: respondWith(http.StatusInternalServerError, "boom"), wantUser: "s3cret"},
		{name: "connection refused", userinfo: "alice:s3cret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base, client := refused, (*http.Client)(nil)
			var b *bundle
			if tt.respond != nil {
				b = setup(t, HTTPConfig{}, tt.respond)
				base, client = b.srv.URL, b.srv.Client()
			}
			host := strings.TrimPrefix(base, "http://")
			h, err := HTTP(HTTPConfig{URL: "http://" + tt.userinfo + "@" + host + "/hook", Client: client})
			require.NoError(t, err)

			err = h(t.Context(), testEvent(t))
			require.Error(t, err)
			require.NotContains(t, err.Error(), "s3cret")
			require.NotContains(t, err.Error(), "alice")
			require.Contains(t, err.Error(), "POST http://xxxxx@"+host+"/hook: ")
			if b != nil {
				got := <-b.requests
				require.Equal(t, tt.wantUser, got.user, "credentials are still sent")
				require.Equal(t, tt.wantPass, got.pass)
			}
		})
	}
}

func TestHTTPRedirect(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	var srv *httptest.Server
	bodies := make(chan string, 32)
	mux.HandleFunc("/old", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/new", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/new", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		bodies <- r.Method + " " + string(body)
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusTemporaryRedirect)
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	t.Run("followed with the body", func(t *testing.T) {
		t.Parallel()
		h := newTestHTTP(t, HTTPConfig{URL: srv.URL + "/old"})
		require.NoError(t, h.handle(t.Context(), testEvent(t)))
		got := <-bodies
		require.True(t, strings.HasPrefix(got, `POST {"id":`), got)
	})
	t.Run("loop is permanent", func(t *testing.T) {
		t.Parallel()
		h := newTestHTTP(t, HTTPConfig{URL: srv.URL + "/loop"})
		err := h.handle(t.Context(), testEvent(t))
		require.EqualError(t, err, "POST "+srv.URL+"/loop: stopped after 10 redirects")
		require.True(t, retry.IsPermanent(err))
	})
}

// newTestHTTP builds the handler itself, so the test can close the idle
// connections of a default client.
func newTestHTTP(t *testing.T, cfg HTTPConfig) *httpHandler {
	t.Helper()
	h, err := newHTTP(cfg)
	require.NoError(t, err)
	t.Cleanup(h.client.CloseIdleConnections)
	return h
}

// trackedBody counts what is read from a response body and whether it was
// closed.
type trackedBody struct {
	r      io.Reader
	read   int
	closed bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += n
	return n, err
}

func (b *trackedBody) Close() error { b.closed = true; return nil }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestHTTPDrainsAndClosesBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		code     int
		size     int
		wantRead int
	}{
		{name: "success, small", code: http.StatusOK, size: 100, wantRead: 100},
		{name: "success, large", code: http.StatusOK, size: 10 * drainLimit, wantRead: drainLimit},
		{name: "failure, small", code: http.StatusServiceUnavailable, size: 100, wantRead: 100},
		{name: "failure, large", code: http.StatusServiceUnavailable, size: 10 * drainLimit, wantRead: 513 + drainLimit},
		{name: "permanent, large", code: http.StatusNotFound, size: 10 * drainLimit, wantRead: 513 + drainLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := &trackedBody{r: strings.NewReader(strings.Repeat("x", tt.size))}
			client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				return &http.Response{
					StatusCode: tt.code,
					Status:     fmt.Sprintf("%d %s", tt.code, http.StatusText(tt.code)),
					Header:     http.Header{},
					Body:       body,
					Request:    r,
				}, nil
			})}
			h, err := HTTP(HTTPConfig{URL: "http://example.invalid/hook", Client: client})
			require.NoError(t, err)
			_ = h(t.Context(), testEvent(t))
			require.True(t, body.closed)
			require.Equal(t, tt.wantRead, body.read)
		})
	}
}

func TestHTTPConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     HTTPConfig
		wantErr string
	}{
		{name: "minimal", cfg: HTTPConfig{URL: "https://example.com/hook"}},
		{name: "everything", cfg: HTTPConfig{URL: "http://localhost:8080/hook?x=1", Timeout: time.Second,
			Client: http.DefaultClient, Headers: map[string]string{"Authorization": "Bearer x\ty"},
			MaxRetryAfter: time.Minute, BodyLimit: 10}},
		{name: "no URL", cfg: HTTPConfig{}, wantErr: "http handler: URL is required"},
		{name: "relative URL", cfg: HTTPConfig{URL: "/hook"}, wantErr: `http handler: URL "/hook": scheme must be http or https`},
		{name: "host without scheme", cfg: HTTPConfig{URL: "example.com/hook"}, wantErr: "scheme must be http or https"},
		{name: "other scheme", cfg: HTTPConfig{URL: "ftp://example.com/x"}, wantErr: `URL "ftp://example.com/x": scheme must be http or https`},
		{name: "no host", cfg: HTTPConfig{URL: "http:///hook"}, wantErr: `URL "http:///hook": has no host`},
		{name: "unparsable, credentials hidden", cfg: HTTPConfig{URL: "http://alice:s3cret@exa mple.com/"},
			wantErr: "http handler: URL is not a valid URL"},
		{name: "credentials hidden", cfg: HTTPConfig{URL: "gopher://alice:s3cret@example.com/"},
			wantErr: `URL "gopher://xxxxx@example.com/": scheme must be http or https`},
		{name: "negative timeout", cfg: HTTPConfig{URL: "http://x", Timeout: -1}, wantErr: "Timeout must not be negative"},
		{name: "negative max retry after", cfg: HTTPConfig{URL: "http://x", MaxRetryAfter: -1}, wantErr: "MaxRetryAfter must not be negative"},
		{name: "negative body limit", cfg: HTTPConfig{URL: "http://x", BodyLimit: -1}, wantErr: "BodyLimit must not be negative"},
		{name: "bad header name", cfg: HTTPConfig{URL: "http://x", Headers: map[string]string{"X Tenant": "a"}},
			wantErr: `Headers: invalid header name "X Tenant"`},
		{name: "empty header name", cfg: HTTPConfig{URL: "http://x", Headers: map[string]string{"": "a"}},
			wantErr: `Headers: invalid header name ""`},
		{name: "bad header value", cfg: HTTPConfig{URL: "http://x", Headers: map[string]string{"X-Tenant": "a\r\nX-Evil: 1"}},
			wantErr: "Headers: header X-Tenant: value contains a control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			_, herr := HTTP(tt.cfg)
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.NoError(t, herr)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), "s3cret")
			require.EqualError(t, herr, err.Error())
		})
	}
}
