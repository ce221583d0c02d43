package ui

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/eventstore/eventstoretest"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bundle is a web view on a fresh embedded store, with a browser-like
// client (cookies kept).
type bundle struct {
	ctx    context.Context
	srv    *httptest.Server
	client *http.Client
	events store.Collection
	errs   store.Collection
	store  *eventstore.Store
	now    time.Time
}

func setup(t *testing.T, mutate func(*Config)) *bundle {
	t.Helper()
	ctx := context.Background()
	db, err := embedded.Open(ctx, embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	st := eventstore.New(db, eventstore.Options{})
	require.NoError(t, st.EnsureIndexes(ctx))
	cfg := Config{Ops: admin.New(st, nil, messaging.DefaultNames())}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &bundle{ctx: ctx, srv: srv, client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		events: db.Collection("events"), errs: db.Collection("errors"), store: st, now: time.Now().UTC().Truncate(time.Millisecond)}
}

func (b *bundle) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := b.client.Get(b.srv.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func (b *bundle) post(t *testing.T, path string, form url.Values, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+path, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// archived puts an archived event into errors as the archiver leaves it.
func (b *bundle) archived(t *testing.T, id any, typ, reason, msg string, at time.Time, extra ...bson.E) {
	t.Helper()
	doc := bson.D{{Key: "_id", Value: id}, {Key: "type", Value: typ}, {Key: "state", Value: int32(3)},
		{Key: "attempts", Value: int64(2)}, {Key: "version", Value: int64(3)}, {Key: "updatedAt", Value: at},
		{Key: "payload", Value: bson.D{{Key: "n", Value: 1}}},
		{Key: "lastError", Value: bson.D{{Key: "message", Value: msg}, {Key: "at", Value: at}}},
		{Key: "retrigger", Value: bson.D{{Key: "reason", Value: reason}, {Key: "archivedAt", Value: at},
			{Key: "history", Value: bson.A{
				bson.D{{Key: "at", Value: at.Add(-2 * time.Second)}, {Key: "outcome", Value: "failed"}, {Key: "attempt", Value: int64(1)}, {Key: "tookMs", Value: int64(12)}, {Key: "replica", Value: "r1"}, {Key: "error", Value: msg}},
				bson.D{{Key: "at", Value: at.Add(-time.Second)}, {Key: "outcome", Value: "error"}, {Key: "attempt", Value: int64(2)}, {Key: "tookMs", Value: int64(7)}, {Key: "replica", Value: "r2"}, {Key: "error", Value: msg}},
				bson.D{{Key: "at", Value: at}, {Key: "outcome", Value: "archived"}, {Key: "error", Value: reason}},
			}}}}}
	doc = append(doc, extra...)
	require.NoError(t, b.errs.InsertOne(b.ctx, doc))
}

var hrefOf = func(id string) *regexp.Regexp {
	return regexp.MustCompile(`<a href="([^"]*)" id="` + id + `"`)
}

// hrefIn finds the href of the element with the id in page.
func hrefIn(t *testing.T, page, id string) string {
	t.Helper()
	m := hrefOf(id).FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// Every page renders what it reads.
func TestPages(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.archived(t, "a-1", "mail", "exhausted", "smtp: 421 try later", b.now.Add(-time.Minute))
	b.archived(t, int64(42), "partner", "permanent", "partner: 400", b.now.Add(-2*time.Minute))
	require.NoError(t, b.events.InsertOne(b.ctx, bson.D{{Key: "_id", Value: "f-1"}, {Key: "type", Value: "mail"}, {Key: "state", Value: int32(2)},
		{Key: "attempts", Value: int64(1)}, {Key: "updatedAt", Value: b.now}, {Key: "nextAttemptAt", Value: b.now.Add(time.Hour)},
		{Key: "lastError", Value: bson.D{{Key: "message", Value: "timeout"}}}}))
	require.NoError(t, b.events.InsertOne(b.ctx, bson.D{{Key: "_id", Value: "n-1"}, {Key: "type", Value: "sms"}, {Key: "createdAt", Value: b.now.Add(-time.Hour)}}))
	require.NoError(t, b.events.InsertOne(b.ctx, bson.D{{Key: "_id", Value: "t-1"}, {Key: "type", Value: "sms"}, {Key: "createdAt", Value: b.now.Add(-time.Hour)},
		{Key: "traceparent", Value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{Key: "retrigger", Value: bson.D{{Key: "history", Value: bson.A{bson.D{{Key: "at", Value: b.now}, {Key: "outcome", Value: "redriven"},
			{Key: "traceId", Value: "0af7651916cd43dd8448eb211c80319c"}, {Key: "spanId", Value: "b7ad6b7169203331"}}}}}}}))
	require.NoError(t, b.events.InsertOne(b.ctx, bson.D{{Key: "_id", Value: "t-2"}, {Key: "type", Value: "sms"}, {Key: "traceparent", Value: "00-zz-01"}}))

	tests := []struct {
		name, path string
		status     int
		want       []string
		not        []string
	}{
		{"overview", "/", 200, []string{`<meta http-equiv="refresh" content="10">`, `data-state="failed"><span class="label">failed</span><span class="count" data-count="1">`,
			`data-state="archived"><span class="label">archived</span><span class="count" data-count="2">`, `<svg id="activity"`, `polyline class="line s-succeeded"`,
			"mail · exhausted", `id="oldest-due"><a href="/event?id=%22n-1%22">`, "no NATS connection", "per minute, "}, []string{"1m0s"}},
		{"overview paused", "/?refresh=off", 200, []string{"Not refreshing"}, []string{`http-equiv="refresh"`}},
		{"events", "/events", 200, []string{"f-1", "n-1", "never run", "timeout"}, []string{"a-1"}},
		{"events by state", "/events?state=failed", 200, []string{"f-1"}, []string{"n-1"}},
		{"errors", "/errors", 200, []string{"a-1", ">42<", "smtp: 421 try later"}, []string{"f-1"}},
		{"errors by type", "/errors?type=partner", 200, []string{">42<"}, []string{"a-1"}},
		{"errors by reason", "/errors?reason=exhausted", 200, []string{"a-1"}, []string{">42<"}},
		{"errors by error text", "/errors?error=4%5Cd%5Cd%20try", 200, []string{"a-1"}, []string{">42<"}},
		{"errors by time", "/errors?since=90s", 200, []string{"a-1"}, []string{">42<"}},
		{"a bad filter", "/errors?since=yesterday", 400, []string{"neither a time"}, nil},
		{"a bad pattern", "/errors?error=(", 400, []string{"error pattern"}, nil},
		{"event in errors", "/event?id=a-1", 200, []string{`&#34;n&#34;: 1`, "smtp: 421 try later", "attempt 1", "took 12ms", "by r2", "archived"}, nil},
		{"event by its number", "/event?id=42", 200, []string{"partner: 400", "in <a href=\"/errors?type=partner\">errors</a>"}, nil},
		{"event by extended JSON", "/event?id=" + url.QueryEscape(`{"$numberLong":"42"}`), 200, []string{"partner: 400"}, nil},
		{"event in events", "/event?id=f-1", 200, []string{"timeout", `data-what="due"`}, nil},
		{"no such event", "/event?id=nope", 404, []string{"No event with id"}, nil},
		{"an event's traces", "/event?id=t-1", 200, []string{"<code>00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01</code>",
			`trace <code>4bf92f3577b34da6a3ce929d0e0e4736</code>`, `trace <code>0af7651916cd43dd8448eb211c80319c</code>`}, nil},
		{"an unusable traceparent", "/event?id=t-2", 200, []string{`not used: traceparent &#34;00-zz-01&#34; is not a W3C trace context`}, []string{"trace <code>"}},
		{"no page", "/nope", 404, []string{"there is no page"}, nil},
		{"static", "/static/ui.js", 200, []string{"use strict"}, nil},
		{"read-only: no actions", "/errors", 200, []string{"read-only"}, []string{"/confirm/"}},
	}
	for _, tt := range tests {
		status, body := b.get(t, tt.path)
		require.Equal(t, tt.status, status, "%s: %s", tt.name, body)
		for _, w := range tt.want {
			require.True(t, strings.Contains(body, w), "%s: no %q in the page", tt.name, w)
		}
		for _, w := range tt.not {
			require.False(t, strings.Contains(body, w), "%s: %q in the page", tt.name, w)
		}
	}
}

// A payload, an error and an id with markup are shown as text on every
// page: nothing they hold runs.
func TestHostileTextIsInert(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.AllowWrites = true })
	const script = `<script>alert("pwned")</script>`
	hostile := script + `<img src=x onerror=alert(1)>" onmouseover="alert(2)`
	b.archived(t, hostile, "mail", "exhausted", hostile, b.now, bson.E{Key: "payload", Value: bson.D{{Key: "html", Value: hostile}}})
	require.NoError(t, b.events.InsertOne(b.ctx, bson.D{{Key: "_id", Value: "e"}, {Key: "type", Value: "mail"}, {Key: "state", Value: int32(2)},
		{Key: "updatedAt", Value: b.now}, {Key: "payload", Value: bson.D{{Key: "x", Value: script}}}, {Key: "lastError", Value: bson.D{{Key: "message", Value: hostile}}}}))
	id := url.QueryEscape(`"` + strings.ReplaceAll(hostile, `"`, `\"`) + `"`)
	for _, path := range []string{"/", "/errors", "/events", "/event?id=" + id, "/event?id=e", "/confirm/redrive?id=" + id, "/errors?type=" + url.QueryEscape(hostile), "/event?id=" + url.QueryEscape(hostile+"x")} {
		status, body := b.get(t, path)
		require.Less(t, status, 500, path)
		require.NotContains(t, body, "<script>alert", path)
		require.NotContains(t, body, "<img src=x", path)
		require.NotContains(t, body, `" onmouseover="alert`, path)
		require.NotContains(t, strings.ReplaceAll(body, `<script src="/static/ui.js" defer></script>`, ""), "<script", path)
	}
	_, body := b.get(t, "/event?id="+id)
	require.Contains(t, body, "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;", "the error and the payload are shown, escaped")
	require.Contains(t, body, `<pre class="payload" id="payload">{
  &#34;html&#34;: &#34;&lt;script&gt;alert(\&#34;pwned\&#34;)`, "the payload is pretty-printed JSON, escaped")
	resp, err := b.client.Get(b.srv.URL + "/errors")
	require.NoError(t, err)
	resp.Body.Close()
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'", "an injected inline script would not run anyway")
}

// Writes need the session's token and a same-origin request; read-only
// views refuse them outright.
func TestCSRF(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.AllowWrites = true })
	for i := range 4 {
		b.archived(t, fmt.Sprintf("x%d", i), "mail", "exhausted", "boom", b.now)
	}
	status, page := b.get(t, "/confirm/redrive?id=x0")
	require.Equal(t, 200, status, page)
	require.Contains(t, page, "this selects <strong data-count=\"1\">1</strong>")
	token := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	require.NotNil(t, token, "the form carries the token")
	form := func(id string, tok string) url.Values { return url.Values{"id": {id}, "csrf": {tok}} }

	tests := []struct {
		name   string
		form   url.Values
		header http.Header
		noJar  bool
		status int
		want   string
	}{
		{"no token", url.Values{"id": {"x0"}}, nil, false, 403, "session token does not match"},
		{"a wrong token", form("x0", token[1]+"x"), nil, false, 403, "session token does not match"},
		{"no cookie", form("x0", token[1]), nil, true, 403, "no session cookie"},
		{"another origin", form("x0", token[1]), http.Header{"Origin": {"https://evil.example"}}, false, 403, "cross-origin"},
		{"another site says the browser", form("x0", token[1]), http.Header{"Sec-Fetch-Site": {"cross-site"}}, false, 403, "cross-origin"},
		{"the form, same origin", form("x1", token[1]), http.Header{"Origin": {b.srv.URL}, "Sec-Fetch-Site": {"same-origin"}}, false, 200, `data-applied="1"`},
	}
	for _, tt := range tests {
		c := b.client
		if tt.noJar {
			b.client = &http.Client{}
		}
		status, body := b.post(t, "/do/redrive", tt.form, tt.header)
		b.client = c
		require.Equal(t, tt.status, status, "%s: %s", tt.name, body)
		require.Contains(t, body, tt.want, tt.name)
		n, err := b.errs.Count(b.ctx, bson.D{{Key: "_id", Value: "x0"}})
		require.NoError(t, err)
		require.EqualValues(t, 1, n, "%s: x0 is never redriven", tt.name)
	}
	n, err := b.events.Count(b.ctx, bson.D{{Key: "_id", Value: "x1"}})
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the confirmed redrive went through")
	// a token of another server (restarted, another secret) is refused
	other := setup(t, func(c *Config) { c.AllowWrites = true })
	u, _ := url.Parse(b.srv.URL)
	ou, _ := url.Parse(other.srv.URL)
	other.client.Jar.SetCookies(ou, b.client.Jar.Cookies(u))
	status, body := other.post(t, "/do/redrive", form("x2", token[1]), nil)
	require.Equal(t, 403, status)
	require.Contains(t, body, "not this server")
}

// Without -allow-writes no page offers an action and every write is
// refused.
func TestReadOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.archived(t, "x", "mail", "exhausted", "boom", b.now)
	for _, path := range []string{"/errors", "/event?id=x"} {
		_, body := b.get(t, path)
		require.NotContains(t, body, "/confirm/", path)
	}
	status, body := b.get(t, "/confirm/redrive?id=x")
	require.Equal(t, 403, status)
	require.Contains(t, body, "read-only")
	_, page := b.get(t, "/")
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	require.Nil(t, tok, "no form")
	status, _ = b.post(t, "/do/redrive", url.Values{"id": {"x"}}, nil)
	require.Equal(t, 403, status)
	n, err := b.errs.Count(b.ctx, bson.D{})
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

// A bulk action shows the count it selects, and changes at most that
// many.
func TestBulkConfirm(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.AllowWrites = true })
	for i := range 5 {
		b.archived(t, fmt.Sprintf("p%d", i), "partner", "exhausted", "partner: 503", b.now.Add(-time.Duration(i)*time.Minute))
	}
	b.archived(t, "m", "mail", "exhausted", "smtp", b.now)
	_, list := b.get(t, "/errors?type=partner")
	require.Contains(t, list, `href="/confirm/redrive?type=partner"`)
	status, page := b.get(t, "/confirm/redrive?type=partner&since=3m30s")
	require.Equal(t, 200, status, page)
	require.Contains(t, page, `data-count="4"`)
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)[1]
	since := regexp.MustCompile(`name="since" value="([^"]+)"`).FindStringSubmatch(page)[1]
	_, err := time.Parse(time.RFC3339Nano, since)
	require.NoError(t, err, "the time confirmed is a fixed time, not '3m30s' again")
	b.archived(t, "p-late", "partner", "exhausted", "partner: 503", b.now) // arrives after the confirmation
	status, body := b.post(t, "/do/redrive", url.Values{"csrf": {tok}, "type": {"partner"}, "since": {since}, "confirmed": {"4"}}, nil)
	require.Equal(t, 200, status, body)
	require.Contains(t, body, `data-applied="4"`, "at most the count confirmed")
	status, _ = b.post(t, "/do/redrive", url.Values{"csrf": {tok}, "type": {"partner"}}, nil)
	require.Equal(t, 400, status, "a bulk write without its confirmed count is refused")

	_, page = b.get(t, "/confirm/purge?type=mail")
	require.Contains(t, page, `data-count="0"`, "purge: archived more than 30 days ago by default")
	_, page = b.get(t, "/confirm/purge?type=mail&older=0s")
	require.Contains(t, page, "a positive duration")
}

// Following the older links walks every archived event once; newer walks
// back.
func TestPaging(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ids := eventstoretest.SampleIDs()
	for i := range 120 {
		var id any = fmt.Sprintf("e%03d", i)
		if i < len(ids) {
			id = ids[i]
		}
		b.archived(t, id, "mail", "exhausted", "boom", b.now.Add(-time.Duration(i%7)*time.Second))
	}
	seen := map[string]bool{}
	path := "/errors?limit=20"
	var pages []string
	for path != "" {
		status, body := b.get(t, path)
		require.Equal(t, 200, status, body)
		pages = append(pages, path)
		for _, m := range regexp.MustCompile(`<tr data-id="([^"]*)"`).FindAllStringSubmatch(body, -1) {
			require.False(t, seen[m[1]], "%s twice", m[1])
			seen[m[1]] = true
		}
		// every row's link opens its event, whatever the id's type
		for _, m := range regexp.MustCompile(`<td><a href="(/event\?id=[^"]*)"`).FindAllStringSubmatch(body, 3) {
			status, _ := b.get(t, html.UnescapeString(m[1]))
			require.Equal(t, 200, status, m[1])
		}
		path = hrefIn(t, body, "older")
	}
	require.Len(t, seen, 120)
	require.Len(t, pages, 6)
	_, last := b.get(t, pages[len(pages)-1])
	newer := hrefIn(t, last, "newer")
	require.NotEmpty(t, newer)
	_, body := b.get(t, newer)
	_, want := b.get(t, pages[len(pages)-2])
	rows := regexp.MustCompile(`<tr data-id="([^"]*)"`)
	require.Equal(t, rows.FindAllString(want, -1), rows.FindAllString(body, -1), "newer goes back a page")
}

// Basic auth, when configured, guards every page.
func TestBasicAuth(t *testing.T) {
	t.Parallel()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	users, err := ReadUsers(strings.NewReader("# operators\nada:plain pass\n\nbob:" + string(hash) + "\n"))
	require.NoError(t, err)
	b := setup(t, func(c *Config) { c.Users = users; c.AllowWrites = true })
	tests := []struct {
		user, pass string
		status     int
	}{
		{"", "", 401}, {"ada", "wrong", 401}, {"eve", "plain pass", 401}, {"ada", "plain pass", 200}, {"bob", "s3cret", 200}, {"bob", "S3cret", 401},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/", nil)
		require.NoError(t, err)
		if tt.user != "" {
			req.SetBasicAuth(tt.user, tt.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, tt.status, resp.StatusCode, "%s:%s", tt.user, tt.pass)
		if tt.status == 401 {
			require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Basic")
		} else {
			require.Contains(t, string(body), "· "+tt.user, "the page names who is signed in")
		}
	}
	for _, bad := range []string{"", "# only a comment\n", "nocolon\n", "ada:\n", "ada:x\nada:y\n", "ada:$apr1$xyz\n", "ada:$2y$10$short\n"} {
		_, err := ReadUsers(strings.NewReader(bad))
		require.Error(t, err, "%q", bad)
	}
}

// Actions are logged with who acted.
func TestActionsNameTheActor(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	users, err := ReadUsers(strings.NewReader("ada:pw\n"))
	require.NoError(t, err)
	b := setup(t, func(c *Config) {
		c.AllowWrites, c.Users = true, users
		l := zerolog.New(&logs)
		c.Logger = &l
	})
	b.archived(t, "x", "mail", "exhausted", "boom", b.now)
	get := func(path string) string {
		req, _ := http.NewRequest(http.MethodGet, b.srv.URL+path, nil)
		req.SetBasicAuth("ada", "pw")
		resp, err := b.client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	page := get("/confirm/redrive?id=x")
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)[1]
	req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/do/redrive", strings.NewReader(url.Values{"csrf": {tok}, "id": {"x"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("ada", "pw")
	resp, err := b.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, logs.String(), `"by":"ada (retrigger ui)"`)
	require.Contains(t, get("/event?id=x"), "by ada (retrigger ui)", "the history names the operator")
}

// The confirm page of an action shows what it would change and nothing
// else: a filter that selects nothing lists no events, and ids the action
// cannot change are refused with the status and the reason the admin API
// gives.
func TestConfirmSaysNo(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.AllowWrites = true })
	b.archived(t, "a1", "partner", "exhausted", "partner: 503", b.now)
	require.NoError(t, b.events.InsertOne(b.ctx, bson.D{{Key: "_id", Value: "s1"}, {Key: "type", Value: "mail"}, {Key: "state", Value: int32(1)}, {Key: "updatedAt", Value: b.now}}))

	status, page := b.get(t, "/confirm/redrive?type=nosuch")
	require.Equal(t, http.StatusOK, status, page)
	require.Contains(t, page, `data-count="0"`)
	require.NotContains(t, page, "The first", "a preview of nothing lists nothing")
	require.NotContains(t, page, "a1")
	status, page = b.get(t, "/confirm/retry?state=failed&type=nosuch")
	require.Equal(t, http.StatusOK, status, page)
	require.NotContains(t, page, "s1")

	status, page = b.get(t, "/confirm/redrive?id=a1&id=s1")
	require.Equal(t, http.StatusOK, status, page)
	require.Contains(t, page, `data-count="1"`)
	require.Contains(t, page, `id="unmatched"`, "the id it passes by is named, with why")
	require.Contains(t, page, "it is success in events")

	for _, tt := range []struct {
		path   string
		status int
		says   string
	}{
		{"/confirm/retry?id=nope123", http.StatusNotFound, "retry nope123: no event or archived event has this id"},
		{"/confirm/retry?id=s1", http.StatusConflict, "retry s1: it is success in events: retry applies to failed events"},
		{"/confirm/redrive?id=s1", http.StatusConflict, "redrive applies to archived events"},
		{"/confirm/cancel?state=success", http.StatusBadRequest, "state success selects none of them"},
		{"/confirm/retry?error=(", http.StatusBadRequest, "error pattern"},
		{"/event?id=nope123", http.StatusNotFound, "in events or errors"},
	} {
		status, page := b.get(t, tt.path)
		require.Equal(t, tt.status, status, "%s: %s", tt.path, page)
		require.Contains(t, page, html.EscapeString(tt.says), tt.path)
	}
}

// With nothing due, the overview says whether failed events wait out
// their backoff rather than that nothing waits.
func TestOverviewSaysWhatWaits(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	_, body := b.get(t, "/")
	require.Contains(t, body, `<p id="oldest-due">Nothing is waiting to run.</p>`)
	require.NoError(t, b.events.InsertOne(b.ctx, bson.D{{Key: "_id", Value: "f-1"}, {Key: "type", Value: "mail"}, {Key: "state", Value: int32(2)},
		{Key: "attempts", Value: int64(1)}, {Key: "updatedAt", Value: b.now}, {Key: "nextAttemptAt", Value: b.now.Add(time.Hour)}}))
	_, body = b.get(t, "/")
	require.Contains(t, body, `<p id="oldest-due">Nothing is due now; 1 failed event waits for its next attempt.</p>`)
}

// A succeeded event's last error is an earlier attempt's: its row does not
// show it as a failure.
func TestSuccessRowsAreNotFailures(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	require.NoError(t, b.events.InsertOne(b.ctx, bson.D{{Key: "_id", Value: "s-1"}, {Key: "type", Value: "mail"}, {Key: "state", Value: int32(1)},
		{Key: "attempts", Value: int64(1)}, {Key: "updatedAt", Value: b.now}, {Key: "lastError", Value: bson.D{{Key: "message", Value: "smtp: 421"}, {Key: "at", Value: b.now}}}}))
	require.NoError(t, b.events.InsertOne(b.ctx, bson.D{{Key: "_id", Value: "f-1"}, {Key: "type", Value: "mail"}, {Key: "state", Value: int32(2)},
		{Key: "attempts", Value: int64(1)}, {Key: "updatedAt", Value: b.now}, {Key: "nextAttemptAt", Value: b.now.Add(time.Hour)},
		{Key: "lastError", Value: bson.D{{Key: "message", Value: "timeout"}, {Key: "at", Value: b.now}}}}))
	_, body := b.get(t, "/events")
	require.Contains(t, body, `class="past-err" title="an earlier attempt's error: the event succeeded">earlier: smtp: 421</td>`)
	require.Contains(t, body, `<td class="err">timeout</td>`)
	require.NotContains(t, body, `<td class="err">smtp: 421</td>`)
	_, body = b.get(t, "/event?id=s-1")
	require.Contains(t, body, `<td class="past-err" id="last-error">smtp: 421 <small>(an earlier attempt's: the event succeeded)</small></td>`)
}

// The state pills are round at both ends: no coloured left border, which a
// border radius bends into a dark crescent.
func TestStatePillsHaveNoLeftBorder(t *testing.T) {
	t.Parallel()
	css, err := staticFS.ReadFile("static/style.css")
	require.NoError(t, err)
	for _, rule := range strings.Split(string(css), "}") {
		selector, body, _ := strings.Cut(rule, "{")
		for _, sel := range strings.Split(selector, ",") {
			if strings.TrimSpace(sel) == ".state" {
				require.NotContains(t, body, "border-left", ".state {%s}", body)
			}
		}
	}
}
