package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/retrigger/retrigger/scripts/loadtest"
)

// progressPrinter rewrites one status line on a terminal, and prints a line
// per report elsewhere.
func progressPrinter(w io.Writer) func(loadtest.Progress) {
	tty := isTerminal(w)
	return func(p loadtest.Progress) {
		line := fmt.Sprintf("%6.1fs  inserted %d/%d · terminal %d · in flight %d · %.0f events/s",
			p.Elapsed.Seconds(), p.Inserted, p.Count, p.Terminal, p.InFlight, p.Rate)
		switch {
		case tty && p.Done:
			fmt.Fprintf(w, "\r\033[K%s\n", line)
		case tty:
			fmt.Fprintf(w, "\r\033[K%s", line)
		default:
			fmt.Fprintln(w, line)
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func printHeader(w io.Writer, o loadtest.Options) {
	o = o.WithDefaults()
	rate := "as fast as possible"
	if o.Rate > 0 {
		rate = fmt.Sprintf("at %g events/s", o.Rate)
	}
	policy := ""
	if o.Policy == loadtest.PolicyStock {
		policy = " (the consumer's stock retry policy)"
	}
	fmt.Fprintf(w, "retrigger load test: %d events %s, %.0f%% handler failures, %d attempts at most%s, %d-byte payloads, %d consumer replicas\n",
		o.Count, rate, o.FailureRate*100, o.MaxAttempts, policy, o.PayloadSize, o.Replicas)
	var flow []string
	if o.Outage > 0 {
		flow = append(flow, fmt.Sprintf("the partner down for %s from the first insert", o.Outage))
	}
	if o.Keys > 0 {
		flow = append(flow, fmt.Sprintf("%d keys, %s", o.Keys, o.KeyMode))
	}
	if o.RateLimit != "" {
		flow = append(flow, "rate limit "+o.RateLimit)
	}
	if len(flow) > 0 || o.Breaker != "on" {
		flow = append(flow, "breaker "+o.Breaker)
		fmt.Fprintf(w, "flow control: %s\n", strings.Join(flow, "; "))
	}
}

func printResult(w io.Writer, r loadtest.Result) {
	p := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-15s %s\n", label, fmt.Sprintf(format, args...))
	}
	fmt.Fprintln(w)
	p("target", "%s", r.Target)
	p("machine", "%d CPUs (GOMAXPROCS %d) %s, %s, %s; started %s; load average %.2f before, %.2f after",
		r.Machine.CPUs, r.Machine.GOMAXPROCS, r.Machine.CPUModel, r.Machine.OS, r.Machine.Go, r.StartedAt.Format(time.RFC3339), r.LoadAvgStart, r.LoadAvgEnd)
	p("throughput", "%.1f events/s: %d events terminal in %.3fs, first insert to last terminal state (inserting took %.3fs)", r.Throughput, r.Terminal, r.Seconds, r.InsertSeconds)
	if r.Settings.Rate > 0 {
		p("pacing", "held %g events/s; the generator fell behind schedule by %.1fms at most", r.Settings.Rate, r.MaxInsertLagMs)
	}
	p("latency", "insert to success, first-time successes (n=%d): %s", r.Latency.Count, summary(r.Latency))
	p("retry lateness", "retry start after it was due (n=%d): %s", r.RetryLateness.Count, summary(r.RetryLateness))
	p("start delay", "insert to the handler's first start (n=%d): %s", r.StartDelay.Count, summary(r.StartDelay))
	if f := r.BackoffFlood; f != nil {
		p("backoff flood", "%d events of type %s in a one-hour backoff during the load; new events of that type, insert to start (n=%d): %s",
			f.InBackoff, f.Type, f.FreshStartDelay.Count, summary(f.FreshStartDelay))
	}
	o := r.Outcomes
	p("outcomes", "inserted %d · succeeded %d (first time %d, after retries %d) · archived in errors %d · not terminal %d",
		r.Inserted, o.Succeeded, o.SucceededFirstTime, o.SucceededAfterRetry, o.Archived, o.NotTerminal)
	ps := r.Pipeline
	p("pipeline", "handler runs %d, failures %d · stale %d · early %d · held %d · storage retries %d · published %d · swept %d · retired %d",
		r.HandlerRuns, r.HandlerFailures, ps.Stale, ps.Early, ps.Held, ps.Retried, ps.Published, ps.Swept, ps.Retired)
	if f := r.Flow; f != nil {
		printFlow(p, f)
	}
	p("peak RSS", "%.1f MiB: %s", float64(r.PeakRSS)/(1<<20), r.PeakRSSScope)
	if c := r.Ceiling; c != nil {
		p("engine ceiling", "%.1f events/s: the engine alone, same writes (%d events, %d writes, %d updaters) in %.3fs; peak RSS %.1f MiB",
			c.EventsPerSec, c.Events, c.Writes, c.Updaters, c.Seconds, float64(c.PeakRSS)/(1<<20))
		p("vs ceiling", "%s", ceilingText(c.Ratio))
	}
	for _, n := range r.Notes {
		p("note", "%s", n)
	}
	inv := r.Invariants
	if inv.OK {
		p("invariants", "OK: none lost, none double-counted, none left non-terminal (%d retired by retention checked by count, %d duplicate handler runs)", inv.Retired, inv.DuplicateRuns)
		if inv.RetiredUnverified > 0 {
			p("", "%d succeeded events were gone from events (the deployment's retention?): not verifiable from here", inv.RetiredUnverified)
		}
		return
	}
	p("invariants", "FAILED: %d lost, %d double-counted, %d non-terminal, %d unobserved", inv.Lost, inv.DoubleCounted, inv.NonTerminal, inv.Unobserved)
	for _, v := range inv.Violations {
		p("", "%s", v)
	}
	if n := inv.Lost + inv.DoubleCounted + inv.NonTerminal + inv.Unobserved; n > len(inv.Violations) {
		p("", "… and %d more", n-len(inv.Violations))
	}
}

// printFlow prints what a run saw of flow control.
func printFlow(p func(label, format string, args ...any), f *loadtest.FlowResult) {
	waits := make([]string, 0, len(f.Waits))
	for _, why := range slices.Sorted(maps.Keys(f.Waits)) {
		waits = append(waits, fmt.Sprintf("%s %d", why, f.Waits[why]))
	}
	held := "none held back"
	if len(waits) > 0 {
		held = "held back: " + strings.Join(waits, ", ")
	}
	p("breaker", "%s · trips %d, %s at the end · failed probes %d (no attempt spent) · %s", f.Breaker, f.Trips, f.State, f.FailedProbes, held)
	if o := f.Outage; o != nil {
		trip := "the breaker did not trip"
		if o.Tripped {
			trip = fmt.Sprintf("the breaker tripped at +%.1fs, and %d calls came after", o.TripSeconds, o.CallsAfterTrip)
		}
		drained := fmt.Sprintf("every event terminal %.1fs after the partner recovered", o.RecoveryToDrainedSeconds)
		if o.DrainedBeforeRecovery {
			drained = "every event terminal before the partner recovered"
		}
		p("outage", "partner down %.0fs from the first insert: %d calls while down; %s · archived %d · attempts spent %d · %s",
			o.Seconds, o.Calls, trip, o.Archived, o.AttemptsSpent, drained)
	}
	if k := f.Keys; k != nil {
		p("keys", "%d keys, %s: runs of one key at once, at most %d (limit %d, reached by %d keys) · %d successes out of insertion order · %d parked for their key",
			k.Keys, k.Mode, k.MaxOverlap, k.Limit, k.KeysAtLimit, k.OutOfOrder, k.Parked)
	}
	if r := f.Rate; r != nil {
		p("rate limit", "%s: the handler saw %.2f runs/s over %.1fs (%d runs) · at most %d starts in any one second (limit+burst %d)",
			r.Limit, r.SeenPerSecond, r.SpanSeconds, r.Runs, r.MaxInOneSecond, r.LimitPlusBurst)
	}
	for _, b := range f.Broken {
		p("flow FAILED", "%s", b)
	}
}

func summary(s loadtest.Summary) string {
	if s.Count == 0 {
		return "none"
	}
	return strings.Join([]string{
		fmt.Sprintf("p50 %.1fms", s.P50), fmt.Sprintf("p90 %.1fms", s.P90),
		fmt.Sprintf("p99 %.1fms", s.P99), fmt.Sprintf("max %.1fms", s.Max),
	}, " · ")
}

// ceilingText says how the pipeline's rate compares with the engine's
// ceiling. The two are separate runs, so the pipeline can measure faster
// than a ceiling by the noise between them: a ratio is not a share.
func ceilingText(ratio float64) string {
	if ratio > 1 {
		return fmt.Sprintf("the pipeline ran at the engine's ceiling (%.2f× the ceiling's own run: the two runs differ by their noise)", ratio)
	}
	return fmt.Sprintf("the pipeline ran at %.2f× the engine's ceiling", ratio)
}
