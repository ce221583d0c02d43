// Package health answers the two questions an orchestrator asks a
// retrigger process. Liveness (/healthz): are its loops making progress?
// Each long-running loop (the relay, the scheduler, the sweeper, each
// replica's pull loops) reports a heartbeat, and a loop that is working,
// not waiting for input, without a beat for longer than its bound is
// stuck: restarting the process is the cure. Readiness (/readyz): can it do
// its job now? NATS is connected, MongoDB answers, and the streams and the
// component's consumers exist. A dependency that is down makes the process
// unready, never unlive: a restart would not bring it back.
//
// A nil *Health and a nil *Loop are valid and do nothing, so components
// built without health reporting need no checks.
package health

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// DefaultCheckTimeout bounds one readiness check.
const DefaultCheckTimeout = 2 * time.Second

// Health holds the loops' heartbeats and the readiness checks of a
// process. It is safe for concurrent use.
type Health struct {
	now func() time.Time

	mu       sync.Mutex
	loops    map[*Loop]struct{}
	checks   []check
	statuses []status
}

// status is a line /readyz shows, such as a producer's role.
type status struct {
	name string
	fn   func() string
}

// Status adds a line "name: fn()" to what /readyz shows, such as whether a
// producer leads or stands by.
func (h *Health) Status(name string, fn func() string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.statuses = append(h.statuses, status{name, fn})
}

// Statuses are the status lines, in the order they were added.
func (h *Health) Statuses() []string {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	st := append([]status(nil), h.statuses...)
	h.mu.Unlock()
	out := make([]string, len(st))
	for i, s := range st {
		out[i] = s.name + ": " + s.fn()
	}
	return out
}

type check struct {
	name string
	fn   func(context.Context) error
}

// New returns an empty Health.
func New() *Health {
	return &Health{now: time.Now, loops: map[*Loop]struct{}{}}
}

// Loop is the heartbeat of one long-running loop.
type Loop struct {
	h     *Health
	name  string
	stuck time.Duration

	mu   sync.Mutex
	last time.Time
	idle bool
}

// Loop registers a loop named name that is stuck when it works for longer
// than stuckAfter without a beat. It starts beating; Done unregisters it.
func (h *Health) Loop(name string, stuckAfter time.Duration) *Loop {
	if h == nil {
		return nil
	}
	l := &Loop{h: h, name: name, stuck: stuckAfter, last: h.now()}
	h.mu.Lock()
	h.loops[l] = struct{}{}
	h.mu.Unlock()
	return l
}

// Beat records progress: the loop went round, or finished a piece of work.
func (l *Loop) Beat() {
	if l == nil {
		return
	}
	now := l.h.now()
	l.mu.Lock()
	l.last, l.idle = now, false
	l.mu.Unlock()
}

// Idle says the loop waits for input that may be long in coming (a
// message, a change): it is not stuck, however long it waits, until its
// next Beat.
func (l *Loop) Idle() {
	if l == nil {
		return
	}
	now := l.h.now()
	l.mu.Lock()
	l.last, l.idle = now, true
	l.mu.Unlock()
}

// Done unregisters the loop: it ended.
func (l *Loop) Done() {
	if l == nil {
		return
	}
	l.h.mu.Lock()
	delete(l.h.loops, l)
	l.h.mu.Unlock()
}

// Check adds a readiness check: fn returns nil when the process can do its
// job as far as name is concerned.
func (h *Health) Check(name string, fn func(context.Context) error) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.checks = append(h.checks, check{name, fn})
	h.mu.Unlock()
}

// Live returns nil when no loop is stuck, or an error naming those that are.
func (h *Health) Live() error {
	if h == nil {
		return nil
	}
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	var stuck []string
	for l := range h.loops {
		l.mu.Lock()
		if since := now.Sub(l.last); !l.idle && since > l.stuck {
			stuck = append(stuck, fmt.Sprintf("%s: no progress for %s (bound %s)", l.name, since.Round(time.Second), l.stuck))
		}
		l.mu.Unlock()
	}
	if len(stuck) == 0 {
		return nil
	}
	sort.Strings(stuck)
	return errors.New(strings.Join(stuck, "; "))
}

// Loops names the registered loops, sorted, with their state.
func (h *Health) Loops() []string {
	if h == nil {
		return nil
	}
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for l := range h.loops {
		l.mu.Lock()
		state := "beat " + now.Sub(l.last).Round(time.Millisecond).String() + " ago"
		if l.idle {
			state = "idle for " + now.Sub(l.last).Round(time.Millisecond).String()
		}
		l.mu.Unlock()
		out = append(out, l.name+": "+state)
	}
	sort.Strings(out)
	return out
}

// Ready runs every readiness check, each bounded by DefaultCheckTimeout,
// and returns nil when all pass, or an error naming those that failed.
func (h *Health) Ready(ctx context.Context) error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	checks := append([]check(nil), h.checks...)
	h.mu.Unlock()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, DefaultCheckTimeout)
			defer cancel()
			if err := c.fn(cctx); err != nil {
				errs[i] = fmt.Errorf("%s: %w", c.name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// LiveHandler serves /healthz: 200 and the loops when none is stuck, 503
// and the stuck ones otherwise.
func (h *Health) LiveHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := h.Live(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "stuck: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ok")
		for _, l := range h.Loops() {
			fmt.Fprintln(w, l)
		}
	})
}

// ReadyHandler serves /readyz: 200 when every check passes, 503 and the
// failures otherwise.
func (h *Health) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := h.Ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready:\n%v\n", err)
		} else {
			fmt.Fprintln(w, "ok")
		}
		for _, s := range h.Statuses() {
			fmt.Fprintln(w, s)
		}
	})
}

// Mux returns a mux serving /healthz, /readyz and, when metrics is not
// nil, /metrics. Callers add their own routes to it.
func (h *Health) Mux(metrics http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", h.LiveHandler())
	mux.Handle("GET /readyz", h.ReadyHandler())
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}
