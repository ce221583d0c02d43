package main

import (
	"fmt"
	"io"
	"os"
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
	o = withDefaults(o)
	rate := "as fast as possible"
	if o.Rate > 0 {
		rate = fmt.Sprintf("at %g events/s", o.Rate)
	}
	fmt.Fprintf(w, "retrigger load test: %d events %s, %.0f%% handler failures, %d attempts at most, %d-byte payloads, %d consumer replicas\n",
		o.Count, rate, o.FailureRate*100, o.MaxAttempts, o.PayloadSize, o.Replicas)
}

func withDefaults(o loadtest.Options) loadtest.Options {
	d := loadtest.Defaults()
	if o.Count == 0 {
		o.Count = d.Count
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = d.MaxAttempts
	}
	if o.Replicas == 0 {
		o.Replicas = d.Replicas
	}
	return o
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
	p("pipeline", "handler runs %d, failures %d · stale %d · early %d · storage retries %d · published %d · swept %d · retired %d",
		r.HandlerRuns, r.HandlerFailures, ps.Stale, ps.Early, ps.Retried, ps.Published, ps.Swept, ps.Retired)
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
