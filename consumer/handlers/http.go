package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/redact"
	"github.com/retrigger/retrigger/shared/tracing"
)

// Headers the HTTP handler sets on every request.
const (
	HeaderEventID   = "Retrigger-Event-Id"
	HeaderEventType = "Retrigger-Event-Type"
	HeaderAttempt   = "Retrigger-Attempt" // 1 for the first execution
)

const (
	defaultHTTPTimeout   = 10 * time.Second
	defaultMaxRetryAfter = time.Hour
	defaultBodyLimit     = 512

	// drainLimit bounds how much of a response body is read, after the
	// snippet, so the connection can be reused; a larger body costs a new
	// connection instead of an unbounded read.
	drainLimit = 64 << 10
	// maxRedirects is how many redirects the default client follows, as
	// net/http's own default.
	maxRedirects = 10
)

// HTTPConfig configures the HTTP handler. The zero value of each field but
// URL means its default.
type HTTPConfig struct {
	// URL is the endpoint each event is POSTed to: an absolute http or https
	// URL. Userinfo is sent (as basic auth) but redacted in errors, as are
	// the values of query options that hold secrets (token=, ...).
	// Required.
	URL string
	// Timeout bounds one request, from connecting to reading the response
	// body. It applies to a custom Client too. Default 10s.
	Timeout time.Duration
	// Client sends the requests. Default: a client of its own with Timeout,
	// a connection pool sized for a busy consumer, and at most 10 redirects
	// (a redirect loop is a permanent error).
	Client *http.Client
	// Headers are added to every request (authorization, a tenant). They do
	// not replace Content-Type and the Retrigger-* headers.
	Headers map[string]string
	// MaxRetryAfter caps the delay a response's Retry-After asks for.
	// Default 1h.
	MaxRetryAfter time.Duration
	// BodyLimit is how many bytes of an unsuccessful response's body the
	// error message quotes. Default 512.
	BodyLimit int
	// Now is the clock Retry-After dates are measured against. Default
	// time.Now.
	Now func() time.Time
}

func (c HTTPConfig) withDefaults() HTTPConfig {
	if c.Timeout == 0 {
		c.Timeout = defaultHTTPTimeout
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = defaultMaxRetryAfter
	}
	if c.BodyLimit == 0 {
		c.BodyLimit = defaultBodyLimit
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first field of c that is invalid. Zero values are
// valid (they take their defaults), except URL.
func (c HTTPConfig) Validate() error {
	if _, err := parseEndpoint(c.URL); err != nil {
		return err
	}
	switch {
	case c.Timeout < 0:
		return fmt.Errorf("http handler: Timeout must not be negative, got %s", c.Timeout)
	case c.MaxRetryAfter < 0:
		return fmt.Errorf("http handler: MaxRetryAfter must not be negative, got %s", c.MaxRetryAfter)
	case c.BodyLimit < 0:
		return fmt.Errorf("http handler: BodyLimit must not be negative, got %d", c.BodyLimit)
	}
	for name, value := range c.Headers {
		if !validHeaderName(name) {
			return fmt.Errorf("http handler: Headers: invalid header name %q", name)
		}
		if !validHeaderValue(value) {
			return fmt.Errorf("http handler: Headers: header %s: value contains a control character", name)
		}
	}
	return nil
}

// parseEndpoint parses an HTTP handler's URL; its errors redact userinfo.
func parseEndpoint(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("http handler: URL is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url's errors quote the whole input, credentials included.
		return nil, errors.New("http handler: URL is not a valid URL")
	}
	shown := redact.URL(u.String())
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("http handler: URL %q: scheme must be http or https", shown)
	case u.Host == "":
		return nil, fmt.Errorf("http handler: URL %q: has no host", shown)
	}
	return u, nil
}

// HTTP returns a handler that POSTs each event as JSON to cfg.URL:
//
//	{"id": "<event id>", "type": "<type>", "attempt": 1, "payload": {...}}
//
// id is the event id as in logs (an ObjectID in hex), attempt counts from 1,
// and payload is the event's payload in relaxed extended JSON, or null. The
// request carries the Retrigger-Event-Id, Retrigger-Event-Type and
// Retrigger-Attempt headers, and the W3C traceparent (and tracestate) of
// the run's span when the worker traces, so the endpoint's own spans join
// the run's trace; a receiver can deduplicate on the id, since delivery is
// at least once.
//
// A 2xx response is a success. 408, 429 and 5xx responses are retried, after
// their Retry-After (seconds or an HTTP date, capped at cfg.MaxRetryAfter)
// when it is positive, else with the type's backoff. Timeouts and connection
// errors are retried. Any other status is permanent: a 4xx will not change
// by retrying, and a final 3xx means the client could not follow it. Error
// messages name the status and quote the start of the response body. The
// response body is always read (bounded) and closed.
func HTTP(cfg HTTPConfig) (consumer.Handler, error) {
	h, err := newHTTP(cfg)
	if err != nil {
		return nil, err
	}
	return h.handle, nil
}

type httpHandler struct {
	cfg    HTTPConfig
	url    string // as sent
	shown  string // as errors show it, userinfo redacted
	client *http.Client
}

func newHTTP(cfg HTTPConfig) (*httpHandler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	u, err := parseEndpoint(cfg.URL)
	if err != nil {
		return nil, err
	}
	h := &httpHandler{cfg: cfg, url: u.String(), shown: redact.URL(u.String()), client: cfg.Client}
	if h.client == nil {
		h.client = defaultClient(cfg.Timeout)
	}
	return h, nil
}

// errTooManyRedirects ends a redirect loop; retrying would loop again.
var errTooManyRedirects = fmt.Errorf("stopped after %d redirects", maxRedirects)

func defaultClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// net/http keeps 2 idle connections per host; a consumer runs many
	// handlers at once against the same endpoint, and would otherwise open
	// and close a connection for most requests.
	t.MaxIdleConnsPerHost = 64
	return &http.Client{
		Transport: t,
		Timeout:   timeout,
		CheckRedirect: func(_ *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return errTooManyRedirects
			}
			return nil
		},
	}
}

// httpBody is the JSON document POSTed for an event.
type httpBody struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Attempt int64           `json:"attempt"`
	Payload json.RawMessage `json:"payload"`
}

func encodeBody(ev *consumer.Event) ([]byte, error) {
	body := httpBody{
		ID:      event.IDText(ev.ID),
		Type:    ev.Type,
		Attempt: ev.Attempts + 1,
		Payload: json.RawMessage("null"),
	}
	if len(ev.Payload) > 0 {
		p, err := bson.MarshalExtJSON(ev.Payload, false, false)
		if err != nil {
			return nil, fmt.Errorf("encoding payload as extended JSON: %w", err)
		}
		body.Payload = p
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(body); err != nil {
		return nil, fmt.Errorf("encoding request body: %w", err)
	}
	return buf.Bytes(), nil
}

func (h *httpHandler) handle(ctx context.Context, ev *consumer.Event) error {
	body, err := encodeBody(ev)
	if err != nil {
		// The same event would fail the same way on every attempt.
		return consumer.Permanent(fmt.Errorf("POST %s: %w", h.shown, err))
	}
	reqCtx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return consumer.Permanent(fmt.Errorf("POST %s: building request: %w", h.shown, err))
	}
	for name, value := range h.cfg.Headers {
		req.Header.Set(name, value)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderEventID, headerID(ev.ID))
	req.Header.Set(HeaderEventType, headerValue(ev.Type))
	req.Header.Set(HeaderAttempt, strconv.FormatInt(ev.Attempts+1, 10))
	tracing.Inject(ctx, req.Header) // the run's span: the endpoint's spans join its trace

	resp, err := h.client.Do(req)
	if err != nil {
		return h.requestError(ctx, err)
	}
	defer func() {
		_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
		_ = resp.Body.Close()
	}()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return h.statusError(resp)
}

// requestError classifies an error of Client.Do: the request may not have
// reached the endpoint, or its response did not arrive, so it is retried,
// except a redirect loop.
func (h *httpHandler) requestError(ctx context.Context, err error) error {
	// *url.Error repeats the URL with the user name in it: say it ourselves.
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	if errors.Is(err, errTooManyRedirects) {
		return consumer.Permanent(fmt.Errorf("POST %s: %w", h.shown, err))
	}
	var nerr net.Error
	timedOut := errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout())
	// Only our own timeout: the worker's handler timeout or a stop ends ctx.
	if timedOut && ctx.Err() == nil {
		return fmt.Errorf("POST %s: timed out after %s: %w", h.shown, h.cfg.Timeout, err)
	}
	return fmt.Errorf("POST %s: %w", h.shown, err)
}

// StatusError is the error of an unsuccessful response. The HTTP handler
// returns it wrapped by consumer.Permanent, consumer.After or
// consumer.Throttle (a 429 or 503 with Retry-After) where they apply;
// errors.As finds it.
type StatusError struct {
	URL        string // userinfo redacted
	StatusCode int
	Status     string // "503 Service Unavailable"
	Body       string // the start of the body, trimmed; "…" marks a cut
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("POST %s: %s", e.URL, e.Status)
	}
	return fmt.Sprintf("POST %s: %s: %s", e.URL, e.Status, e.Body)
}

// Retryable reports whether the status may succeed on a later attempt.
func (e *StatusError) Retryable() bool { return retryableStatus(e.StatusCode) }

// retryableStatus: 408 and 429 ask the client to come back; 5xx is the
// server's failure, often temporary. Everything else not 2xx is the
// request's fault, or a redirect the client could not follow, and will not
// change by sending the same request again.
func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests ||
		(code >= 500 && code < 600)
}

func (h *httpHandler) statusError(resp *http.Response) error {
	status := resp.Status
	if status == "" {
		status = strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
	}
	serr := &StatusError{
		URL:        h.shown,
		StatusCode: resp.StatusCode,
		Status:     strings.TrimSpace(status),
		Body:       readSnippet(resp.Body, h.cfg.BodyLimit),
	}
	if !serr.Retryable() {
		return consumer.Permanent(serr)
	}
	if d, ok := retryAfter(resp.Header.Get("Retry-After"), h.cfg.Now()); ok {
		d = min(d, h.cfg.MaxRetryAfter)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			// The partner asks every caller to wait: the whole type pauses.
			return consumer.Throttle(d, serr)
		}
		return consumer.After(d, serr)
	}
	return serr
}

// retryAfter parses a Retry-After header, delay-seconds or an HTTP date
// (RFC 9110, section 10.2.3). Only a positive delay counts: a zero or past
// one would spend an attempt at once, so the policy's backoff applies.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseUint(v, 10, 63); err == nil {
		const maxSecs = uint64(1<<63-1) / uint64(time.Second)
		d = time.Duration(min(secs, maxSecs)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return d, d > 0
}

// readSnippet reads up to limit bytes of a body for an error message,
// trimmed, cut at a character boundary, with "…" when there was more.
func readSnippet(r io.Reader, limit int) string {
	if limit <= 0 {
		return ""
	}
	// Read errors (a timeout mid-body) leave what arrived, which is enough.
	b, _ := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	cut := len(b) > limit
	if cut {
		b = b[:limit]
		// Drop a character split by the cut, at most utf8.UTFMax-1 bytes.
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.Valid(b); i++ {
			b = b[:len(b)-1]
		}
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
	if cut {
		s += "…"
	}
	return s
}

// validHeaderName reports whether name is an RFC 9110 token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether net/http would send v: no control
// characters but tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// headerValue makes an event's id or type safe to send as a header value:
// an id chosen by the application may hold any character.
// maxHeaderID bounds the event id in a request header; a longer id is
// sent as its key (event.Key), unique and short, and in full in the body.
const maxHeaderID = 200

func headerID(id bson.RawValue) string {
	if s := event.IDText(id); len(s) <= maxHeaderID {
		return headerValue(s)
	}
	return event.Key(id)
}

func headerValue(v string) string {
	if validHeaderValue(v) {
		return v
	}
	return strconv.QuoteToASCII(v)
}
