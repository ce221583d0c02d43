package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/shared/flow"
)

// flow runs pause, resume and flow.
func (r *runner) flow(ctx context.Context, cmd string, args []string) error {
	now := r.io.Now()
	switch {
	case cmd == "flow" && len(args) > 0:
		return fmt.Errorf("%w: flow takes no arguments", errUsage)
	case cmd != "flow" && len(args) != 1:
		return fmt.Errorf("%w: %s takes one event type, e.g. %s partner", errUsage, cmd, cmd)
	case cmd != "pause" && (r.o.until != "" || len(r.o.reasonText) > 0 || r.o.force):
		return fmt.Errorf("%w: -until, -reason and -force are pause's; %s takes none of them", errUsage, cmd)
	}
	var until time.Time
	if cmd == "pause" && r.o.until != "" {
		var err error
		if until, err = admin.ParseUntil(r.o.until, now); err != nil {
			return fmt.Errorf("%w: -until: %v", errUsage, err)
		}
	}
	ops, closeOps, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer closeOps()
	switch cmd {
	case "pause":
		st, err := ops.Pause(ctx, admin.PauseRequest{Type: args[0], Until: until, Reason: strings.Join(r.o.reasonText, "; "), By: r.o.actor(), Force: r.o.force})
		if err != nil {
			return err
		}
		r.log.Info().Str("type", args[0]).Time("until", until).Msg("paused")
		return r.print(st, func() { printFlow(r.io.Out, []admin.FlowStatus{*st}, r.io.Now()) })
	case "resume":
		st, err := ops.Resume(ctx, admin.ResumeRequest{Type: args[0], By: r.o.actor()})
		if err != nil {
			return err
		}
		r.log.Info().Str("type", args[0]).Msg("resumed")
		return r.print(st, func() { printFlow(r.io.Out, []admin.FlowStatus{*st}, r.io.Now()) })
	}
	all, err := ops.Flow(ctx)
	if err != nil {
		return err
	}
	return r.print(all, func() { printFlow(r.io.Out, all, r.io.Now()) }) // now: after the answer, or a pause just made reads "in 1ms"
}

// printFlow prints each type's flow control: its breaker, its pause, and
// what waits behind them.
func printFlow(w io.Writer, all []admin.FlowStatus, now time.Time) {
	if len(all) == 0 {
		fmt.Fprintln(w, "no event types yet")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "TYPE\tBREAKER\tPAUSED\tWAITING\tPARKED\tLIMITS")
	for _, f := range all {
		breaker := f.Breaker
		switch f.Breaker {
		case flow.Open:
			breaker = fmt.Sprintf("open since %s, %s; next probe %s", ago(f.Since, now), trips(f.Trips), inAt(f.NextProbe, now))
		case flow.Recovering:
			breaker = fmt.Sprintf("recovering since %s: %d at once", ago(f.Since, now), f.WaveLimit)
		}
		paused := "-"
		if p := f.Pause; p != nil {
			paused = "by " + p.By + " " + ago(p.At, now)
			if p.Source == flow.SourceRetryAfter {
				paused = "by the partner's Retry-After " + ago(p.At, now)
			}
			if p.Until.IsZero() {
				paused += ", until resumed"
			} else {
				paused += ", until " + stamp(p.Until)
			}
			if p.Reason != "" {
				paused += ": " + clip(p.Reason, 60)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", f.Type, breaker, paused, f.Waiting, f.Parked, f.Limits)
	}
	tw.Flush()
	for _, f := range all {
		if f.Breaker == flow.Open && f.Reason != "" {
			fmt.Fprintf(w, "%s tripped: %s\n", f.Type, clip(f.Reason, 200))
		}
	}
}

// trips says how often a breaker tripped.
func trips(n int64) string {
	if n == 1 {
		return "1 trip"
	}
	return fmt.Sprintf("%d trips", n)
}

// inAt says when t comes: "in 12s", or "now".
func inAt(t, now time.Time) string {
	if !t.After(now) {
		return "now"
	}
	return "in " + t.Sub(now).Round(time.Second).String()
}
