package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// report is what a run prints.
type report struct {
	s              settings
	args           []string
	runID          string
	f              *flood
	began, stopped time.Time
	lastKill       time.Time
	drained        time.Duration
	timedOut       bool
	sup            *supervisor
	comps          []*component
	res            outcomes
	vs             []violation
	orphans        map[bson.ObjectID][]orphan
	expired        map[int64]expiredLease
	scans          int
	scanMax        time.Duration
	logs           string
	pruned         int
}

// passed: every check held, every event was terminal in time, and every
// component ran again after each kill without exiting by itself.
func (r *report) passed() bool {
	r.sup.mu.Lock()
	defer r.sup.mu.Unlock()
	return len(r.vs) == 0 && !r.timedOut && len(r.sup.exits) == 0 && len(r.sup.notReady) == 0
}

// maxListed bounds the violations printed per kind.
const maxListed = 10

func (r *report) print(w io.Writer) {
	verdict := "PASS"
	if !r.passed() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "chaos: %s\n", verdict)
	fmt.Fprintf(w, "command     %s\n", r.command())
	fmt.Fprintf(w, "machine     %s\n", loadAverage())

	n := len(r.f.inserted)
	p50, p99, top := percentiles(r.f.latencies)
	asked := "as fast as possible"
	if r.s.rate > 0 {
		asked = fmt.Sprintf("%.0f/s asked", r.s.rate)
	}
	fmt.Fprintf(w, "flood       %d events inserted in %s (%s, %.1f/s done); insert p50 %s, p99 %s, max %s\n",
		n, r.f.took.Round(time.Millisecond), asked, float64(n)/max(r.f.took.Seconds(), 1e-9), ms(p50), ms(p99), ms(top))

	kills := r.sup.killed()
	byComp := map[string]int{}
	for _, k := range kills {
		byComp[k.Component]++
	}
	var parts []string
	for _, c := range r.comps {
		parts = append(parts, fmt.Sprintf("%s %d", c.name, byComp[c.name]))
	}
	fmt.Fprintf(w, "kills       %d kill -9 (%s), one every %s on average\n", len(kills), strings.Join(parts, ", "), r.meanKillGap(kills))

	r.sup.mu.Lock()
	parts = parts[:0]
	for _, c := range r.comps {
		p50, _, top := percentiles(r.sup.toReady[c.name])
		parts = append(parts, fmt.Sprintf("%s %s/%s (%d starts)", c.name, ms(p50), ms(top), len(r.sup.toReady[c.name])))
	}
	exits, notReady := append([]string(nil), r.sup.exits...), append([]string(nil), r.sup.notReady...)
	r.sup.mu.Unlock()
	fmt.Fprintf(w, "ready       start to ready, p50/max: %s\n", strings.Join(parts, ", "))

	if r.timedOut {
		fmt.Fprintf(w, "drain       NOT every event terminal within -timeout %s\n", r.s.timeout)
	} else {
		since := "the last kill"
		if len(kills) == 0 {
			since = "the last insert"
		}
		fmt.Fprintf(w, "drain       every event terminal %s after %s (%s after the first insert)\n",
			r.drained.Round(100*time.Millisecond), since, r.stopped.Sub(r.began).Round(100*time.Millisecond))
	}
	reasons := make([]string, 0, len(r.res.ByReason))
	for reason, k := range r.res.ByReason {
		reasons = append(reasons, fmt.Sprintf("%s %d", reason, k))
	}
	sort.Strings(reasons)
	fmt.Fprintf(w, "outcomes    succeeded %d (first time %d), archived %d (%s); %d histories too full to count runs\n",
		r.res.Succeeded, r.res.FirstTime, r.res.Archived, strings.Join(reasons, ", "), r.res.Unverifiable)

	interrupted := 0
	for _, os := range r.orphans {
		interrupted += len(os)
	}
	fmt.Fprintf(w, "leases      %d runs of %d events interrupted by a kill (a lease held by a killed consumer); %d leases of consumers not killed seen more than 1s past their end\n",
		interrupted, len(r.orphans), len(r.expired))
	fmt.Fprintf(w, "scans       %d reads of events and errors, the longest %s; %d successes verified and deleted during the run (-prune-after %s)\n",
		r.scans, ms(r.scanMax), r.pruned, r.s.pruneAfter)
	for _, line := range logSummary(r.logs, r.comps) {
		fmt.Fprintf(w, "log         %s\n", line)
	}
	for _, e := range exits {
		fmt.Fprintf(w, "EXIT        %s\n", e)
	}
	for _, e := range notReady {
		fmt.Fprintf(w, "NOT READY   %s\n", e)
	}
	if len(r.vs) == 0 {
		fmt.Fprintf(w, "invariants  OK: every event terminal, none lost, none double-counted, none left leased, no crashed archive without a kill\n")
	} else {
		byKind := map[string]int{}
		var kinds []string
		for _, v := range r.vs {
			if byKind[v.Kind] == 0 {
				kinds = append(kinds, v.Kind)
			}
			byKind[v.Kind]++
		}
		parts = parts[:0]
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%s %d", k, byKind[k]))
		}
		fmt.Fprintf(w, "invariants  BROKEN for %d events: %s\n", len(r.vs), strings.Join(parts, ", "))
		shown := map[string]int{}
		for _, v := range r.vs {
			if shown[v.Kind]++; shown[v.Kind] <= maxListed {
				fmt.Fprintf(w, "  %s\n", v)
			}
		}
	}
	if len(r.expired) > 0 {
		fmt.Fprintf(w, "expired leases of consumers not killed (first %d):\n", min(maxListed, len(r.expired)))
		var es []expiredLease
		for _, e := range r.expired {
			es = append(es, e)
		}
		sort.Slice(es, func(i, j int) bool { return es[i].until.Before(es[j].until) })
		for _, e := range es[:min(maxListed, len(es))] {
			fmt.Fprintf(w, "  %s: leased by %s until %s\n", e.id.Hex(), e.owner, e.until.Format("15:04:05.000"))
		}
	}
}

// command is the command line that repeats the run's schedule.
func (r *report) command() string {
	args := []string{"go build -o chaos ./scripts/chaos && ./chaos"}
	for _, a := range r.args {
		if !strings.HasPrefix(a, "-seed") {
			args = append(args, a)
		}
	}
	return strings.Join(append(args, fmt.Sprintf("-seed %d", r.s.seed)), " ")
}

func (r *report) meanKillGap(ks []kill) time.Duration {
	if len(ks) < 2 {
		return 0
	}
	return (ks[len(ks)-1].At.Sub(ks[0].At) / time.Duration(len(ks)-1)).Round(10 * time.Millisecond)
}

func ms(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "load average unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "load average unknown"
	}
	return fmt.Sprintf("load average %s %s %s at the end", f[0], f[1], f[2])
}

// logSummary counts, per component, the warnings and errors its
// incarnations logged (zerolog JSON), with the most frequent messages.
func logSummary(dir string, comps []*component) []string {
	var lines []string
	for _, c := range comps {
		f, err := os.Open(filepath.Join(dir, c.name+".log"))
		if err != nil {
			continue
		}
		counts := map[string]int{}
		total := 0
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e struct {
				Level   string `json:"level"`
				Message string `json:"message"`
				Msg     string `json:"msg"`
				Error   string `json:"error"`
			}
			line := sc.Bytes()
			if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
				continue
			}
			lvl := strings.ToLower(e.Level)
			if lvl != "warn" && lvl != "warning" && lvl != "error" && lvl != "fatal" && lvl != "panic" {
				continue
			}
			msg := e.Message
			if msg == "" {
				msg = e.Msg
			}
			total++
			counts[lvl+": "+msg]++
		}
		f.Close()
		if total == 0 {
			continue
		}
		type mc struct {
			m string
			n int
		}
		var top []mc
		for m, n := range counts {
			top = append(top, mc{m, n})
		}
		sort.Slice(top, func(i, j int) bool { return top[i].n > top[j].n || (top[i].n == top[j].n && top[i].m < top[j].m) })
		var parts []string
		for _, t := range top[:min(3, len(top))] {
			parts = append(parts, fmt.Sprintf("%d× %q", t.n, t.m))
		}
		lines = append(lines, fmt.Sprintf("%s: %d warnings and errors; %s", c.name, total, strings.Join(parts, ", ")))
	}
	return lines
}
