package flow

import (
	"fmt"
	"math/bits"
	"time"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
)

// The breaker's states as its document stores them.
const (
	Closed     = "closed"
	Open       = "open"
	Recovering = "recovering"
)

// windowBuckets is how many buckets a window has: each Window/30 long.
const windowBuckets = 30

// counts are the runs and counted failures of a window's buckets, newest
// last: bucket head-len+1+i is at index i.
type counts struct {
	head  int64
	width time.Duration
	runs  []int64
	fails []int64
}

func newCounts(width time.Duration) counts {
	return counts{width: width, runs: make([]int64, windowBuckets), fails: make([]int64, windowBuckets)}
}

func fromDoc(w eventstore.Window, width time.Duration) counts {
	if w.Width != width || len(w.Runs) != windowBuckets || len(w.Fails) != windowBuckets {
		return newCounts(width) // another geometry: the rules changed, start over
	}
	return counts{head: w.Head, width: width, runs: append([]int64(nil), w.Runs...), fails: append([]int64(nil), w.Fails...)}
}

func (c counts) doc() eventstore.Window {
	return eventstore.Window{Head: c.head, Width: c.width, Runs: c.runs, Fails: c.fails}
}

func (c *counts) bucket(t time.Time) int64 { return t.UnixNano() / int64(c.width) }

// advance moves the window so that bucket b is its newest, dropping what
// falls out.
func (c *counts) advance(b int64) {
	if b <= c.head {
		return
	}
	shift := b - c.head
	c.head = b
	if shift >= windowBuckets {
		clear(c.runs)
		clear(c.fails)
		return
	}
	copy(c.runs, c.runs[shift:])
	copy(c.fails, c.fails[shift:])
	clear(c.runs[windowBuckets-shift:])
	clear(c.fails[windowBuckets-shift:])
}

// add counts runs and fails into bucket b, if it is still in the window.
func (c *counts) add(b, runs, fails int64) {
	c.advance(b)
	i := windowBuckets - 1 - (c.head - b)
	if i < 0 {
		return
	}
	c.runs[i] += runs
	c.fails[i] += fails
}

// merge adds o's buckets into c.
func (c *counts) merge(o counts) {
	for i := range o.runs {
		if o.runs[i] != 0 || o.fails[i] != 0 {
			c.add(o.head-int64(windowBuckets-1-i), o.runs[i], o.fails[i])
		}
	}
}

// total is the runs and fails of the window ending at bucket b.
func (c counts) total(b int64) (runs, fails int64) {
	for i := range c.runs {
		if c.head-int64(windowBuckets-1-i) > b-windowBuckets {
			runs += c.runs[i]
			fails += c.fails[i]
		}
	}
	return runs, fails
}

// state is the breaker's state as it stands at now, derived from its
// document: a recovering breaker whose waves reached the top is closed.
func state(f *eventstore.FlowState, rules Breaker, now time.Time) string {
	switch f.Breaker.State {
	case Open:
		if rules.Off {
			return Closed // turned off while open: it holds nothing
		}
		return Open
	case Recovering:
		if rules.Off || waveLimit(f, rules, now) >= DefaultMaxWave {
			return Closed
		}
		return Recovering
	}
	return Closed
}

// waveLimit is how many runs of a recovering type may run at once across
// the replicas at now: 1, doubling every DefaultWave since it began.
func waveLimit(f *eventstore.FlowState, rules Breaker, now time.Time) int {
	waves := int(now.Sub(f.Breaker.Since) / DefaultWave)
	if waves < 0 {
		waves = 0
	}
	if waves >= bits.Len(DefaultMaxWave) {
		return DefaultMaxWave
	}
	return min(1<<waves, DefaultMaxWave)
}

// record merges a replica's unflushed counts into f and trips the breaker
// when the window meets the rules. It reports whether it tripped, and why.
func record(f *eventstore.FlowState, rules Breaker, local counts, now time.Time, lastErr string) (bool, string) {
	if rules.Off {
		return false, ""
	}
	w := fromDoc(f.Window, rules.Window/windowBuckets)
	w.merge(local)
	b := w.bucket(now)
	w.advance(b)
	f.Window = w.doc()
	if state(f, rules, now) == Open {
		return false, ""
	}
	runs, fails := w.total(b)
	if runs < int64(rules.MinRuns) || float64(fails) < rules.Ratio*float64(runs) {
		return false, ""
	}
	why := fmt.Sprintf("%d of %d runs failed in %s", fails, runs, rules.Window)
	if lastErr != "" {
		why += "; the last: " + truncate(lastErr, 300)
	}
	trip(f, rules, now, why)
	return true, why
}

// trip opens the breaker: no run of the type starts until a probe at
// now+Probe succeeds.
func trip(f *eventstore.FlowState, rules Breaker, now time.Time, why string) {
	f.Breaker = eventstore.Breaker{State: Open, Since: now, Trips: f.Breaker.Trips + 1, Reason: why,
		NextProbe: now.Add(rules.Probe), Interval: rules.Probe}
	f.Window = newCounts(rules.Window / windowBuckets).doc()
}

// probeFailed keeps the breaker open and waits longer for the next probe,
// up to MaxProbe.
func probeFailed(f *eventstore.FlowState, rules Breaker, now time.Time, why string) {
	next := min(time.Duration(float64(max(f.Breaker.Interval, rules.Probe))*DefaultProbeGrowth), rules.MaxProbe)
	f.Breaker.Interval, f.Breaker.NextProbe, f.Breaker.Probe = next, now.Add(next), nil
	if why != "" {
		f.Breaker.Reason = "probe failed: " + truncate(why, 300)
	}
}

// probeInconclusive frees the probe without judging the partner (the
// probe's event failed on its own, or did not run): another probes now.
func probeInconclusive(f *eventstore.FlowState, now time.Time) {
	f.Breaker.Probe, f.Breaker.NextProbe = nil, now
}

// recovered starts the recovery waves.
func recovered(f *eventstore.FlowState, rules Breaker, now time.Time) {
	f.Breaker.State, f.Breaker.Since, f.Breaker.Probe, f.Breaker.NextProbe = Recovering, now, nil, time.Time{}
	f.Window = newCounts(rules.Window / windowBuckets).doc()
}

// close ends a recovery, or an open breaker of a type whose breaker was
// turned off or resumed by hand.
func closeBreaker(f *eventstore.FlowState, now time.Time) {
	f.Breaker.State, f.Breaker.Since, f.Breaker.Probe, f.Breaker.NextProbe, f.Breaker.Interval = Closed, now, nil, time.Time{}, 0
}

// takeProbe gives the probe to lease when the breaker is open, the probe
// is due and no other live probe holds it.
func takeProbe(f *eventstore.FlowState, rules Breaker, lease event.Lease, now time.Time) bool {
	if state(f, rules, now) != Open || f.Breaker.NextProbe.After(now) {
		return false
	}
	if p := f.Breaker.Probe; p != nil && p.Until.After(now) && p.Token != lease.Token {
		return false
	}
	f.Breaker.Probe = &lease
	return true
}

// paused reports whether a pause holds the type at now, and until when
// (zero: until resumed).
func paused(f *eventstore.FlowState, now time.Time) (bool, time.Time) {
	p := f.Pause
	if p == nil || (!p.Until.IsZero() && !p.Until.After(now)) {
		return false, time.Time{}
	}
	return true, p.Until
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i] + "…"
}
