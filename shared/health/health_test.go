package health

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestLiveness(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1000, 0)}
	h := New()
	h.now = c.now
	busy := h.Loop("relay", time.Minute)
	waiting := h.Loop("pull demo", time.Minute)
	waiting.Idle()
	c.add(30 * time.Second)
	if err := h.Live(); err != nil {
		t.Fatalf("within the bound: %v", err)
	}
	c.add(31 * time.Second)
	err := h.Live()
	if err == nil || !strings.Contains(err.Error(), "relay") || strings.Contains(err.Error(), "pull demo") {
		t.Fatalf("a working loop past its bound is stuck, an idle one is not: %v", err)
	}
	rec := httptest.NewRecorder()
	h.LiveHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/healthz of a stuck loop: %d", rec.Code)
	}
	busy.Beat()
	if err := h.Live(); err != nil {
		t.Fatalf("a beat clears it: %v", err)
	}
	waiting.Beat() // got a message, now working on it
	c.add(2 * time.Minute)
	busy.Done()
	if err := h.Live(); err == nil || !strings.Contains(err.Error(), "pull demo") {
		t.Fatalf("a loop that took a message and never came back is stuck: %v", err)
	}
	waiting.Done()
	if err := h.Live(); err != nil {
		t.Fatalf("no loops: %v", err)
	}
}

func TestReadiness(t *testing.T) {
	t.Parallel()
	h := New()
	var mu sync.Mutex
	down := errors.New("connection refused")
	var fail error
	h.Check("nats", func(context.Context) error { mu.Lock(); defer mu.Unlock(); return fail })
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.Mux(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != http.StatusOK {
		t.Fatalf("ready: %d %s", code, body)
	}
	mu.Lock()
	fail = down
	mu.Unlock()
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "nats: connection refused") {
		t.Fatalf("not ready: %d %s", code, body)
	}
}

func TestNil(t *testing.T) {
	t.Parallel()
	var h *Health
	l := h.Loop("x", time.Second)
	l.Beat()
	l.Idle()
	l.Done()
	h.Check("x", nil)
	if h.Live() != nil || h.Ready(context.Background()) != nil {
		t.Fatal("a nil Health is always live and ready")
	}
}
