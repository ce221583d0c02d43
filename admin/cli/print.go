package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/shared/eventstore"
)

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// ago renders how long before now t is, or after it ("in 3s").
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	if d < 0 {
		return "in " + short(-d)
	}
	return short(d) + " ago"
}

func short(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < 48*time.Hour:
		return d.Round(time.Second).String()
	}
	return fmt.Sprintf("%dd%s", int(d/(24*time.Hour)), (d % (24 * time.Hour)).Round(time.Hour))
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000")
}

// pivot writes counts by type (rows) and column (state or reason).
func pivot(w io.Writer, title string, groups []eventstore.GroupCount, columns []string, col func(eventstore.GroupCount) string) {
	counts := map[string]map[string]int64{}
	seen := map[string]bool{}
	for _, c := range columns {
		seen[c] = true
	}
	for _, g := range groups {
		c := col(g)
		if !seen[c] {
			seen[c] = true
			columns = append(columns, c)
		}
		if counts[g.Type] == nil {
			counts[g.Type] = map[string]int64{}
		}
		counts[g.Type][c] += g.Count
	}
	types := make([]string, 0, len(counts))
	for t := range counts {
		types = append(types, t)
	}
	sort.Strings(types)
	tw := table(w)
	fmt.Fprintf(tw, "%s\t%s\ttotal\n", title, strings.Join(columns, "\t"))
	totals := map[string]int64{}
	var all int64
	for _, t := range types {
		var row []string
		var sum int64
		for _, c := range columns {
			n := counts[t][c]
			totals[c] += n
			sum += n
			row = append(row, fmt.Sprint(n))
		}
		all += sum
		fmt.Fprintf(tw, "%s\t%s\t%d\n", t, strings.Join(row, "\t"), sum)
	}
	if len(types) != 1 {
		var row []string
		for _, c := range columns {
			row = append(row, fmt.Sprint(totals[c]))
		}
		fmt.Fprintf(tw, "(all types)\t%s\t%d\n", strings.Join(row, "\t"), all)
	}
	tw.Flush()
}

func printStats(w io.Writer, s *admin.Stats, now time.Time) {
	pivot(w, "EVENTS", s.Events, []string{"new", "failed", "error", "success"}, func(g eventstore.GroupCount) string { return g.State })
	fmt.Fprintln(w)
	if d := s.OldestDue; d != nil {
		fmt.Fprintf(w, "oldest due: %s (%s, %s), due since %s (%s)\n", d.IDText, d.Type, d.State, stamp(d.Since), ago(d.Since, now))
	} else if n := s.InState("failed"); n == 1 {
		fmt.Fprintln(w, "oldest due: none due now; 1 failed event waits for its next attempt")
	} else if n > 1 {
		fmt.Fprintf(w, "oldest due: none due now; %d failed events wait for their next attempt\n", n)
	} else {
		fmt.Fprintln(w, "oldest due: none, nothing waits to run")
	}
	fmt.Fprintln(w)
	pivot(w, "ERRORS", s.Errors, []string{"exhausted", "permanent", "crashed", "rejected", "cancelled"}, func(g eventstore.GroupCount) string { return g.Reason })
	fmt.Fprintf(w, "archived in the last hour: %d, in the last day: %d\n\n", s.ArchivedLastHour, s.ArchivedLastDay)
	if len(s.Flow) > 0 {
		fmt.Fprintln(w, "FLOW CONTROL")
		printFlow(w, s.Flow, now)
		fmt.Fprintln(w)
	}
	if s.StreamsError != "" {
		fmt.Fprintf(w, "STREAMS unknown: %s\n", s.StreamsError)
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "STREAM\tMESSAGES\tCONSUMER\tPENDING\tACK PENDING\tREDELIVERED\tWAITING PULLS")
	for _, st := range s.Streams {
		if len(st.Consumers) == 0 {
			fmt.Fprintf(tw, "%s\t%d\t(none)\t\t\t\t\n", st.Name, st.Messages)
		}
		for i, c := range st.Consumers {
			name, msgs := st.Name, fmt.Sprint(st.Messages)
			if i > 0 {
				name, msgs = "", ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", name, msgs, c.Name, c.Pending, c.AckPending, c.Redelivered, c.Waiting)
		}
	}
	tw.Flush()
	if len(s.Unserved) > 0 {
		var types []string
		for t, n := range s.Unserved {
			types = append(types, fmt.Sprintf("%s (%d waiting)", t, n))
		}
		sort.Strings(types)
		fmt.Fprintf(w, "\nno replica handles: %s\n", strings.Join(types, ", "))
	}
}

func printItems(w io.Writer, in string, items []admin.Item, now time.Time) {
	if len(items) == 0 {
		fmt.Fprintf(w, "no %s match\n", in)
		return
	}
	tw := table(w)
	if in == "errors" {
		fmt.Fprintln(tw, "ID\tTYPE\tREASON\tATTEMPTS\tARCHIVED\tREDRIVES\tLAST ERROR")
		for _, it := range items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\n", clip(it.IDText, 40), it.Type, it.Reason, it.Attempts, ago(it.ArchivedAt, now), it.Redrives, clip(it.LastError, 60))
		}
	} else {
		fmt.Fprintln(tw, "ID\tTYPE\tSTATE\tATTEMPTS\tUPDATED\tDUE\tLAST ERROR")
		for _, it := range items {
			state := it.State
			if it.Leased {
				state += " (running)"
			}
			due := "-"
			if it.State == "failed" {
				due = ago(it.NextAttemptAt, now)
			}
			lastError := clip(it.LastError, 60)
			if it.State == "success" && it.LastError != "" {
				lastError = "earlier: " + clip(it.LastError, 51) // the event succeeded after it
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", clip(it.IDText, 40), it.Type, state, it.Attempts, ago(it.UpdatedAt, now), due, lastError)
		}
	}
	tw.Flush()
}

func printShow(w io.Writer, s *admin.Show, now time.Time) {
	for i, e := range s.Found {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if len(s.Found) > 1 {
			fmt.Fprintf(w, "(%d of %d found for %s)\n", i+1, len(s.Found), s.Query)
		}
		fmt.Fprintf(w, "event %s in %s\n", e.IDText, e.In)
		tw := table(w)
		fmt.Fprintf(tw, "  id\t%s\n", e.ID)
		fmt.Fprintf(tw, "  type\t%s\n", e.Type)
		state := e.State
		switch {
		case e.In == "errors":
			state = fmt.Sprintf("archived (%s) %s, at %s", e.Reason, ago(e.ArchivedAt, now), stamp(e.ArchivedAt))
		case e.Leased:
			state += ", running now"
		case e.State == "failed":
			state += ", next attempt " + ago(e.NextAttemptAt, now)
		}
		fmt.Fprintf(tw, "  state\t%s\n", state)
		runs := fmt.Sprintf("%d (version %d", e.Attempts, e.Version)
		if e.Redrives > 0 {
			runs += ", redriven " + times(e.Redrives)
		}
		fmt.Fprintf(tw, "  failed runs\t%s)\n", runs)
		if e.LastError != "" {
			fmt.Fprintf(tw, "  last error\t%s\n", clip(e.LastError, 200))
		}
		if e.Invalid != "" {
			fmt.Fprintf(tw, "  invalid\t%s\n", e.Invalid)
		}
		if e.TraceParent != "" || e.TraceInvalid != "" {
			tp := e.TraceParent
			if e.TraceInvalid != "" {
				tp = "not used: " + e.TraceInvalid
			}
			fmt.Fprintf(tw, "  traceparent\t%s\n", tp)
		}
		if len(e.Payload) > 0 {
			fmt.Fprintf(tw, "  payload\t%s\n", clip(string(e.Payload), 200))
		}
		tw.Flush()
		fmt.Fprintln(w)
		tw = table(w)
		traced := false
		for _, st := range e.Timeline {
			traced = traced || st.TraceID != ""
		}
		if traced {
			fmt.Fprintln(tw, "  TIME (UTC)\tWHAT\tATTEMPT\tTOOK\tBY\tTRACE\tERROR")
		} else {
			fmt.Fprintln(tw, "  TIME (UTC)\tWHAT\tATTEMPT\tTOOK\tBY\tERROR")
		}
		for _, st := range e.Timeline {
			attempt, took := "", ""
			if st.Attempt > 0 {
				attempt = fmt.Sprint(st.Attempt)
			}
			if st.TookMs > 0 || st.What == "success" || st.What == "failed" || st.What == "error" {
				took = (time.Duration(st.TookMs) * time.Millisecond).String()
			}
			if traced {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", stamp(st.At), st.What, attempt, took, st.Replica, st.TraceID, clip(st.Error, 70))
			} else {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", stamp(st.At), st.What, attempt, took, st.Replica, clip(st.Error, 70))
			}
		}
		tw.Flush()
		if e.Dropped > 0 {
			fmt.Fprintf(w, "  (%d earlier attempts are beyond the history's bound)\n", e.Dropped)
		}
	}
}

// count is n and the noun, plural unless n is 1: "1 event", "2 events".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// times is how often: "once", "3 times".
func times(n int64) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

func printPreview(w io.Writer, cmd string, p *admin.ActionResult) {
	fmt.Fprintf(w, "%s would change %s", cmd, count(p.Selected, "event"))
	if len(p.Sample) == 0 {
		fmt.Fprintln(w)
	} else {
		if p.Selected == 1 {
			fmt.Fprintln(w, ":")
		} else {
			fmt.Fprintln(w, "; the first of them:")
		}
		tw := table(w)
		for _, it := range p.Sample {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", clip(it.IDText, 40), it.Type, it.State+" "+it.Reason, clip(it.LastError, 60))
		}
		tw.Flush()
	}
	printUnmatched(w, p.Unmatched)
}

// printUnmatched lists the ids given that selected nothing, and why.
func printUnmatched(w io.Writer, unmatched []admin.Skip) {
	for _, s := range unmatched {
		fmt.Fprintf(w, "  not selected %s: %s\n", clip(s.IDText, 40), s.Why)
	}
}

func printResult(w io.Writer, r *admin.ActionResult) {
	fmt.Fprintf(w, "%s: %d changed, %d skipped (of %d selected)\n", r.Action, r.Applied, r.Skipped, r.Selected)
	for _, s := range r.Skips[:min(len(r.Skips), 20)] {
		fmt.Fprintf(w, "  skipped %s: %s\n", clip(s.IDText, 40), s.Why)
	}
	if len(r.Skips) > 20 {
		fmt.Fprintf(w, "  … and %d more skipped (-o json lists them)\n", r.Skipped-20)
	}
	printUnmatched(w, r.Unmatched)
}
