package browsertest

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/admin/ui"
	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/scripts/pipeline"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/retry"
	"github.com/retrigger/retrigger/shared/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// browser finds a Chromium or Chrome: RETRIGGER_TEST_BROWSER, or one on
// the PATH.
func browser() (string, bool) {
	if p := os.Getenv("RETRIGGER_TEST_BROWSER"); p != "" {
		return p, true
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	return "", false
}

// open starts a headless browser with a fresh profile, with the flags
// that keep it off the network but for the pages it is sent to.
func open(t *testing.T) context.Context {
	t.Helper()
	path, ok := browser()
	if !ok {
		t.Skip("no browser found: install chromium (apt-get install -y chromium) or set RETRIGGER_TEST_BROWSER to one")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile(t)),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	require.NoError(t, chromedp.Do(ctx), "starting %s", path) // the browser lives as long as ctx
	return ctx
}

// profile is a fresh profile directory. Chromium's helpers may still
// write in it for a moment after the browser stops, so its removal is
// retried, and a leftover is not a failure.
func profile(t *testing.T) string {
	dir, err := os.MkdirTemp("", "retrigger-chromium-")
	require.NoError(t, err)
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	return dir
}

// shot saves a screenshot of the whole page into dir, and into
// RETRIGGER_UI_SCREENSHOTS when set (how docs/ gets its pictures).
func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
	if d := os.Getenv("RETRIGGER_UI_SCREENSHOTS"); d != "" {
		require.NoError(t, os.WriteFile(filepath.Join(d, name+".png"), png, 0o644))
	}
}

// run runs an action that returns a value, failing the test on an error.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	require.NoError(t, err)
	return v
}

// do runs actions, failing the test on an error.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, steps...))
}

// follow runs an action that loads a page (a click on a link, a submit)
// and waits for the page.
func follow(t *testing.T, ctx context.Context, step chromedp.Action[chromedp.Void]) {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx, step)
	require.NoError(t, err)
	require.EqualValues(t, 200, resp.Status, resp.URL)
}

func attr(t *testing.T, ctx context.Context, sel, name string) string {
	t.Helper()
	return run(t, ctx, chromedp.AttributeValue(chromedp.CSS(sel), name)).Value
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func count(t *testing.T, c store.Collection, filter bson.D) int64 {
	t.Helper()
	n, err := c.Count(context.Background(), filter)
	require.NoError(t, err)
	return n
}

// An operator's session, in a real browser, on the running pipeline: the
// overview's counts are the store's, the errors filter by type, an
// event's timeline shows its attempts in order, and a redrive from the
// event's page brings it back into events, where it succeeds.
func TestOperatorSession(t *testing.T) {
	t.Parallel()
	ctx := open(t)
	start := time.Now()
	var healed atomic.Bool
	o := pipeline.Options{Memory: true, Replicas: 1}
	o.Worker.Handlers = map[string]consumer.Handler{
		"mail": func(context.Context, *consumer.Event) error {
			if healed.Load() {
				return nil
			}
			return errors.New("smtp: 421 4.7.0 try again later")
		},
		"sms": func(context.Context, *consumer.Event) error { return nil },
		"partner": func(context.Context, *consumer.Event) error {
			return consumer.Permanent(errors.New("partner: 400 bad request"))
		},
	}
	o.Worker.Policies = retry.Policies{Default: retry.Policy{InitialInterval: 20 * time.Millisecond, Multiplier: 2, MaxInterval: 100 * time.Millisecond, RandomizationFactor: -1, MaxAttempts: 3}}
	o.Producer.Sweeper.Interval = 200 * time.Millisecond
	p, err := pipeline.Start(context.Background(), o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	events, errs := p.DB.Collection("events"), p.DB.Collection("errors")
	bg := context.Background()
	for i := range 6 {
		require.NoError(t, events.InsertOne(bg, bson.D{{Key: "type", Value: "sms"}, {Key: "payload", Value: bson.D{{Key: "to", Value: fmt.Sprintf("+4470000000%02d", i)}}}, {Key: "createdAt", Value: time.Now()}}))
	}
	for i := range 3 {
		require.NoError(t, events.InsertOne(bg, bson.D{{Key: "_id", Value: fmt.Sprintf("order-%d", i)}, {Key: "type", Value: "mail"}, {Key: "payload", Value: bson.D{{Key: "to", Value: fmt.Sprintf("ada%d@example.com", i)}, {Key: "order", Value: i}}}, {Key: "createdAt", Value: time.Now()}}))
	}
	for i := range 2 {
		require.NoError(t, events.InsertOne(bg, bson.D{{Key: "_id", Value: int64(700 + i)}, {Key: "type", Value: "partner"}, {Key: "payload", Value: bson.D{{Key: "sku", Value: "A-1"}}}, {Key: "createdAt", Value: time.Now()}}))
	}
	waitFor(t, 30*time.Second, "6 successes and 5 archived", func() bool {
		return count(t, events, bson.D{{Key: "state", Value: int32(1)}}) == 6 && count(t, errs, bson.D{}) == 5 && count(t, events, bson.D{{Key: "state", Value: bson.D{{Key: "$ne", Value: int32(1)}}}}) == 0
	})

	js, err := jetstream.New(p.Conn)
	require.NoError(t, err)
	ops := admin.New(eventstore.New(p.Database(), p.Options().Producer.Store), js, p.Options().Producer.Names)
	h, err := ui.New(ui.Config{Ops: ops, AllowWrites: true})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	t.Logf("pipeline settled in %s; screenshots in %s", time.Since(start).Round(time.Millisecond), dir)
	browsing := time.Now()

	// The overview's counts are the store's.
	do(t, ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("activity")))
	require.Equal(t, strconv.FormatInt(count(t, events, bson.D{{Key: "state", Value: int32(1)}}), 10), attr(t, ctx, `.card[data-state="success"] .count`, "data-count"))
	require.Equal(t, "0", attr(t, ctx, `.card[data-state="failed"] .count`, "data-count"))
	require.Equal(t, strconv.FormatInt(count(t, errs, bson.D{}), 10), attr(t, ctx, `.card[data-state="archived"] .count`, "data-count"))
	require.Equal(t, 1, run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#by-type tbody tr[data-type]").length`)), "one type left in events: sms")
	shot(t, ctx, dir, "overview")

	// The errors, filtered by type with the form.
	do(t, ctx, chromedp.Navigate(srv.URL+"/errors"), chromedp.WaitVisible(chromedp.ID("filter")),
		chromedp.SetValue(chromedp.CSS(`#filter input[name="type"]`), "mail"))
	follow(t, ctx, chromedp.Submit(chromedp.CSS(`#filter input[name="type"]`)))
	require.Contains(t, run(t, ctx, chromedp.Location()), "type=mail")
	types := run(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#items tbody tr")).map(r => r.dataset.type)`))
	require.Equal(t, []string{"mail", "mail", "mail"}, types)
	shot(t, ctx, dir, "errors")

	// An event's timeline: its attempts in order.
	follow(t, ctx, chromedp.Click(chromedp.CSS(`#items tbody tr:first-child td a`)))
	do(t, ctx, chromedp.WaitVisible(chromedp.ID("timeline")))
	what := run(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#timeline li")).map(l => l.dataset.what)`))
	attempts := run(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#timeline li[data-attempt]")).map(l => l.dataset.attempt)`))
	times := run(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#timeline li time")).map(t => t.getAttribute("datetime"))`))
	id := run(t, ctx, chromedp.Text(chromedp.CSS(`article.event h2 code`)))
	require.Equal(t, []string{"inserted", "failed", "failed", "error", "archived"}, what)
	require.Equal(t, []string{"1", "2", "3"}, attempts)
	for i := 1; i < len(times); i++ {
		a, err := time.Parse(time.RFC3339Nano, times[i-1])
		require.NoError(t, err)
		b, err := time.Parse(time.RFC3339Nano, times[i])
		require.NoError(t, err)
		require.False(t, b.Before(a), "the timeline is in time order: %v", times)
	}
	shot(t, ctx, dir, "event")

	// Redrive it, once the cause is fixed: confirm, and see it succeed.
	healed.Store(true)
	follow(t, ctx, chromedp.Click(chromedp.CSS(`p.actions a.button`)))
	require.Equal(t, "1", attr(t, ctx, `#selected strong`, "data-count"), "the confirmation shows the count")
	shot(t, ctx, dir, "confirm")
	follow(t, ctx, chromedp.Click(chromedp.ID("confirm")))
	require.Equal(t, "1", attr(t, ctx, `#result strong`, "data-applied"))
	shot(t, ctx, dir, "result")
	waitFor(t, 15*time.Second, id+" back in events and succeeded", func() bool {
		doc, err := events.FindOne(bg, bson.D{{Key: "_id", Value: id}})
		if err != nil {
			return false
		}
		ev, err := event.Parse(doc)
		return err == nil && ev.State == event.StateSuccess
	})
	require.EqualValues(t, 0, count(t, errs, bson.D{{Key: "_id", Value: id}}), "gone from errors")
	do(t, ctx, chromedp.Navigate(srv.URL+"/event?id="+id), chromedp.WaitVisible(chromedp.ID("timeline")))
	require.Equal(t, "events", attr(t, ctx, `article.event`, "data-in"))
	require.Equal(t, "success", run(t, ctx, chromedp.Text(chromedp.CSS(`article.event h2 .state`))))
	what = run(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#timeline li")).map(l => l.dataset.what)`))
	require.Equal(t, []string{"inserted", "failed", "failed", "error", "archived", "redriven", "success"}, what)
	shot(t, ctx, dir, "event-redriven")

	// Pause a type from the overview's flow control, with a reason: the
	// row says so, with who and why, and offers to resume it.
	row := `#flow-types tr[data-type="partner"]`
	do(t, ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("flow-types")),
		chromedp.SetValue(chromedp.CSS(row+` input[name="until"]`), "30m"),
		chromedp.SetValue(chromedp.CSS(row+` input[name="reason"]`), "partner maintenance window"))
	follow(t, ctx, chromedp.Submit(chromedp.CSS(row+` input[name="reason"]`)))
	require.Equal(t, "Done: paused partner.", run(t, ctx, chromedp.Text(chromedp.CSS(`#flow p.done`))))
	paused := run(t, ctx, chromedp.Text(chromedp.CSS(row+` td:nth-child(3)`)))
	require.Contains(t, paused, "paused by")
	require.Contains(t, paused, "partner maintenance window")
	require.Equal(t, "held", attr(t, ctx, row, "class"))
	shot(t, ctx, dir, "overview-paused")
	follow(t, ctx, chromedp.Click(chromedp.CSS(row+` form[action="/flow/resume"] button`)))
	require.Equal(t, "Done: resumed partner.", run(t, ctx, chromedp.Text(chromedp.CSS(`#flow p.done`))))
	require.Equal(t, "no", run(t, ctx, chromedp.Text(chromedp.CSS(row+` td:nth-child(3)`))))
	t.Logf("browsing took %s", time.Since(browsing).Round(time.Millisecond))
}
