package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"

	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/retrigger/retrigger/admin"
)

type runner struct {
	o   *options
	io  IO
	log logger
}

func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
}

func (r *runner) run(ctx context.Context, pos []string) error {
	if r.o.output != "table" && r.o.output != "json" {
		return fmt.Errorf("%w: -o %q is neither table nor json", errUsage, r.o.output)
	}
	cmd, args := pos[0], pos[1:]
	switch cmd {
	case "stats", "ls", "show", "retry", "cancel", "redrive", "purge":
	case "ui":
		return r.serveUI(ctx, args)
	case "pause", "resume", "flow":
		return r.flow(ctx, cmd, args)
	default:
		return fmt.Errorf("%w: unknown command %q (see -help)", errUsage, cmd)
	}
	now := r.io.Now()
	q, err := r.o.query(now)
	if err != nil {
		return err
	}
	ops, closeOps, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer closeOps()
	switch cmd {
	case "stats":
		if len(args) > 0 {
			return fmt.Errorf("%w: stats takes no arguments", errUsage)
		}
		s, err := ops.Stats(ctx)
		if err != nil {
			return err
		}
		return r.print(s, func() { printStats(r.io.Out, s, now) })
	case "ls":
		if len(args) != 1 || (args[0] != "events" && args[0] != "errors") {
			return fmt.Errorf("%w: ls events or ls errors", errUsage)
		}
		if q.Limit == 0 {
			q.Limit = 50
		}
		items, err := ops.List(ctx, admin.ListRequest{In: args[0], Query: q, Oldest: r.o.oldest})
		if err != nil {
			return err
		}
		return r.print(items, func() { printItems(r.io.Out, args[0], items, now) })
	case "show":
		if len(args) != 1 {
			return fmt.Errorf("%w: show takes one id", errUsage)
		}
		s, err := ops.Show(ctx, args[0])
		if err != nil {
			return err
		}
		return r.print(s, func() { printShow(r.io.Out, s, now) })
	case "purge":
		if len(args) < 1 || args[0] != "errors" {
			return fmt.Errorf("%w: purge errors FILTER -older-than D", errUsage)
		}
		args = args[1:]
		if len(args) > 0 {
			return fmt.Errorf("%w: purge errors takes a filter, not ids", errUsage)
		}
	}
	q.IDs = args
	req := admin.ActionRequest{Query: q, All: r.o.all, By: r.o.actor()}
	if req.Rate, err = parseRate(r.o.rate); err != nil {
		return fmt.Errorf("%w: -rate: %v", errUsage, err)
	}
	if r.o.olderThan != "" {
		if req.OlderThan, err = parseDuration(r.o.olderThan); err != nil {
			return fmt.Errorf("%w: -older-than: %v", errUsage, err)
		}
	} else if cmd == "purge" {
		return fmt.Errorf("%w: purge errors needs -older-than, e.g. -older-than 30d", errUsage)
	}
	return r.act(ctx, ops, cmd, req)
}

// act runs an action: a dry run first (what it selects), the question,
// then the action with its progress, and a log line of what it changed.
func (r *runner) act(ctx context.Context, ops admin.Operations, cmd string, req admin.ActionRequest) error {
	do := map[string]func(context.Context, admin.ActionRequest, func(admin.Progress)) (*admin.ActionResult, error){
		"retry": ops.Retry, "cancel": ops.Cancel, "redrive": ops.Redrive, "purge": ops.Purge,
	}[cmd]
	dry := req
	dry.DryRun = true
	preview, err := do(ctx, dry, nil)
	if err != nil {
		return err
	}
	if r.o.dryRun {
		return r.print(preview, func() { printPreview(r.io.Out, cmd, preview) })
	}
	if preview.Selected == 0 {
		return r.print(preview, func() { fmt.Fprintf(r.io.Out, "%s: nothing selected\n", cmd) })
	}
	if !r.o.yes {
		if !r.io.InTerminal {
			return fmt.Errorf("%w: %s would change %s: pass -yes to confirm (standard input is not a terminal to ask on)", errUsage, cmd, count(preview.Selected, "event"))
		}
		printPreview(r.io.Err, cmd, preview)
		fmt.Fprintf(r.io.Err, "%s %s? [y/N] ", cmd, count(preview.Selected, "event"))
		answer, _ := bufio.NewReader(r.io.In).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(r.io.Err, "nothing changed")
			return nil
		}
	}
	bar := newProgress(r.io.Err, r.io.ErrTerminal, cmd)
	res, err := do(ctx, req, bar.update)
	bar.done()
	if res != nil && res.Applied > 0 {
		r.log.Info().Str("action", cmd).Str("by", req.By).Int("applied", res.Applied).Int("skipped", res.Skipped).
			Strs("ids", res.Changed[:min(len(res.Changed), 20)]).Msg("changed events")
	}
	if err != nil {
		if res != nil {
			fmt.Fprintf(r.io.Err, "%s stopped after %d changed, %d skipped\n", cmd, res.Applied, res.Skipped)
		}
		return err
	}
	return r.print(res, func() { printResult(r.io.Out, res) })
}

// print writes v as JSON with -o json, or calls table.
func (r *runner) print(v any, table func()) error {
	if r.o.output == "json" {
		enc := json.NewEncoder(r.io.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	table()
	return nil
}

// progress shows an action's progress: a bar redrawn in place on a
// terminal, a line every few seconds elsewhere.
type progress struct {
	w        interface{ Write([]byte) (int, error) }
	terminal bool
	what     string
	start    time.Time
	last     time.Time
	drawn    bool
}

func newProgress(w interface{ Write([]byte) (int, error) }, terminal bool, what string) *progress {
	return &progress{w: w, terminal: terminal, what: what, start: time.Now()}
}

func (p *progress) update(pr admin.Progress) {
	now := time.Now()
	rate := float64(pr.Done) / max(now.Sub(p.start).Seconds(), 0.001)
	if p.terminal {
		if now.Sub(p.last) < 100*time.Millisecond && pr.Done != pr.Total {
			return
		}
		const width = 30
		filled := 0
		if pr.Total > 0 {
			filled = width * pr.Done / pr.Total
		}
		fmt.Fprintf(p.w, "\r%s [%s%s] %d/%d  %.0f/s  %d skipped ", p.what, strings.Repeat("#", filled), strings.Repeat(".", width-filled), pr.Done, pr.Total, rate, pr.Skipped)
		p.drawn, p.last = true, now
		return
	}
	if now.Sub(p.last) < 2*time.Second && pr.Done != pr.Total {
		return
	}
	p.last = now
	fmt.Fprintf(p.w, "%s: %d/%d done, %d changed, %d skipped, %.0f/s\n", p.what, pr.Done, pr.Total, pr.Applied, pr.Skipped, rate)
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
