package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/retrigger/retrigger/admin"
)

// The window and step of the overview's chart.
const (
	chartWindow = time.Hour
	chartStep   = time.Minute
)

// defaultPageSize is a list's page size unless the reader picks another.
const defaultPageSize = 50

var (
	stateNames  = []string{"new", "failed", "success", "error"}
	reasonNames = []string{"exhausted", "permanent", "rejected", "crashed", "cancelled", "application"}
	pageSizes   = []int{20, 50, 100, 200}
)

// href builds a link to path with the query values.
func href(path string, q url.Values) template.URL {
	if len(q) == 0 {
		return template.URL(path)
	}
	return template.URL(path + "?" + q.Encode())
}

// eventHref links to an event's page by its exact id (canonical
// extended JSON), whatever its BSON type.
func eventHref(id json.RawMessage) template.URL {
	return href("/event", url.Values{"id": {string(id)}})
}

// filter is a list's filter as the reader typed it.
type filter struct {
	In                                       string // events or errors
	Type, State, Reason, Error, Since, Until string
	Limit                                    int
}

func (f filter) values() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"type": f.Type, "state": f.State, "reason": f.Reason, "error": f.Error, "since": f.Since, "until": f.Until} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit != 0 && f.Limit != defaultPageSize {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

// Empty reports whether the filter selects everything.
func (f filter) Empty() bool {
	return f.Type == "" && f.State == "" && f.Reason == "" && f.Error == "" && f.Since == "" && f.Until == ""
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// readFilter reads a filter from r's query or form.
func readFilter(r *http.Request, in string) filter {
	f := filter{In: in, Type: strings.TrimSpace(r.FormValue("type")), Error: r.FormValue("error"),
		Since: strings.TrimSpace(r.FormValue("since")), Until: strings.TrimSpace(r.FormValue("until"))}
	if in == "events" {
		f.State = strings.TrimSpace(r.FormValue("state"))
	} else {
		f.Reason = strings.TrimSpace(r.FormValue("reason"))
	}
	f.Limit, _ = strconv.Atoi(r.FormValue("limit"))
	if f.Limit <= 0 {
		f.Limit = defaultPageSize
	}
	f.Limit = min(f.Limit, 500)
	return f
}

// query is the admin query of f, its times read at now.
func (f filter) query(now time.Time) (admin.Query, error) {
	q := admin.Query{Types: split(f.Type), States: split(f.State), Reasons: split(f.Reason), Error: f.Error}
	var err error
	if q.Since, err = admin.ParseTime(f.Since, now); err != nil {
		return q, fmt.Errorf("%w: since: %v", admin.ErrInvalid, err)
	}
	if q.Until, err = admin.ParseTime(f.Until, now); err != nil {
		return q, fmt.Errorf("%w: until: %v", admin.ErrInvalid, err)
	}
	return q, nil
}

// item is an event in a list.
type item struct {
	admin.Item
	Href template.URL
}

func items(in []admin.Item) []item {
	out := make([]item, len(in))
	for i, it := range in {
		out[i] = item{Item: it, Href: eventHref(it.ID)}
	}
	return out
}

// link is a labelled link.
type link struct {
	Label string
	Href  template.URL
}

// overview: the state of the deployment.
func (s *server) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	stats, err := s.cfg.Ops.Stats(ctx)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	act, err := s.cfg.Ops.Activity(ctx, chartWindow, chartStep)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	d := overviewData{Stats: stats, Chart: newChart(act), Paused: r.FormValue("refresh") == "off", Flow: flowRows(stats), FlowDone: r.FormValue("flow")}
	d.States, d.Types = eventCounts(stats)
	d.Archive, d.ArchivedTotal = archiveCounts(stats)
	if stats.OldestDue != nil {
		d.OldestHref = eventHref(stats.OldestDue.ID)
	}
	for t, n := range stats.Unserved {
		d.Unserved = append(d.Unserved, unserved{Type: t, Waiting: n})
	}
	sort.Slice(d.Unserved, func(i, j int) bool { return d.Unserved[i].Type < d.Unserved[j].Type })
	v := view{Title: "Overview", Nav: "overview", Data: d}
	if !d.Paused {
		v.Refresh = int(s.cfg.Refresh.Seconds())
	}
	s.render(w, r, http.StatusOK, "overview", v)
}

type overviewData struct {
	Stats         *admin.Stats
	States        []count
	Types         []typeRow
	Archive       []count
	ArchivedTotal int64
	Chart         chart
	OldestHref    template.URL
	Unserved      []unserved
	Paused        bool
	Flow          []flowRow
	FlowDone      string // what a pause or resume just did
}

type count struct {
	Label string
	Count int64
	Href  template.URL
	Class string
}

type typeRow struct {
	Type   string
	Href   template.URL
	States []count // one per state in stateNames order, then "invalid"
	Total  int64
}

type unserved struct {
	Type    string
	Waiting uint64
}

// eventCounts totals the events per state, and per type and state.
func eventCounts(st *admin.Stats) ([]count, []typeRow) {
	names := append(append([]string{}, stateNames...), "invalid")
	totals := make([]count, len(names))
	for i, n := range names {
		totals[i] = count{Label: n, Class: "st-" + n, Href: href("/events", url.Values{"state": {n}})}
		if n == "invalid" {
			totals[i].Href = ""
		}
	}
	rows := map[string]*typeRow{}
	for _, g := range st.Events {
		i := slices.Index(names, g.State)
		if i < 0 {
			i = len(names) - 1
		}
		row := rows[g.Type]
		if row == nil {
			row = &typeRow{Type: g.Type, Href: href("/events", url.Values{"type": {g.Type}}), States: make([]count, len(names))}
			for j, n := range names {
				row.States[j] = count{Label: n, Class: "st-" + n, Href: href("/events", url.Values{"type": {g.Type}, "state": {n}})}
				if n == "invalid" {
					row.States[j].Href = ""
				}
			}
			rows[g.Type] = row
		}
		row.States[i].Count += g.Count
		row.Total += g.Count
		totals[i].Count += g.Count
	}
	out := make([]typeRow, 0, len(rows))
	for _, row := range rows {
		out = append(out, *row)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	if totals[len(totals)-1].Count == 0 {
		totals = totals[:len(totals)-1]
		for i := range out {
			out[i].States = out[i].States[:len(names)-1]
		}
	}
	return totals, out
}

// archiveCounts lists the archive by type and reason.
func archiveCounts(st *admin.Stats) ([]count, int64) {
	var out []count
	var total int64
	for _, g := range st.Errors {
		reason := g.Reason
		if reason == "" {
			reason = "(none)"
		}
		q := url.Values{"type": {g.Type}}
		if g.Reason != "" {
			q.Set("reason", g.Reason)
		}
		out = append(out, count{Label: g.Type + " · " + reason, Count: g.Count, Href: href("/errors", q)})
		total += g.Count
	}
	return out, total
}

// list: a page of events or of archived events.
func (s *server) list(w http.ResponseWriter, r *http.Request) {
	in := strings.TrimPrefix(r.URL.Path, "/")
	f := readFilter(r, in)
	d := listData{In: in, F: f, States: stateNames, Reasons: reasonNames, Sizes: pageSizes}
	q, err := f.query(s.cfg.Now())
	if err == nil {
		q.Limit = f.Limit
		var p *admin.Page
		p, err = s.cfg.Ops.Page(r.Context(), admin.PageRequest{In: in, Query: q, After: r.FormValue("after"), Before: r.FormValue("before")})
		if err == nil {
			d.Items, d.Examined, d.Partial = items(p.Items), p.Examined, p.Partial
			base := f.values()
			if p.Older != "" {
				v := cloneValues(base)
				v.Set("after", p.Older)
				d.Older = href("/"+in, v)
			}
			if p.Newer != "" {
				v := cloneValues(base)
				v.Set("before", p.Newer)
				d.Newer = href("/"+in, v)
				d.Newest = href("/"+in, base)
			}
		}
	}
	if err != nil {
		d.Err = err.Error()
	}
	if s.cfg.AllowWrites {
		bulk := f.values()
		bulk.Del("limit")
		if in == "events" {
			d.Bulk = []link{{"Retry the failed events of this filter…", href("/confirm/retry", bulk)}, {"Cancel the new and failed events of this filter…", href("/confirm/cancel", bulk)}}
		} else {
			d.Bulk = []link{{"Redrive the archived events of this filter…", href("/confirm/redrive", bulk)}, {"Purge the archived events of this filter…", href("/confirm/purge", bulk)}}
		}
	}
	title := "Events"
	if in == "errors" {
		title = "Errors"
	}
	status := http.StatusOK
	if d.Err != "" {
		status = http.StatusBadRequest
	}
	s.render(w, r, status, "list", view{Title: title, Nav: in, Data: d})
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

type listData struct {
	In                   string
	F                    filter
	Items                []item
	Older, Newer, Newest template.URL
	Examined             int
	Partial              bool
	Bulk                 []link
	Err                  string
	States, Reasons      []string
	Sizes                []int
}

// event: an event's payload, fields and timeline.
func (s *server) event(w http.ResponseWriter, r *http.Request) {
	id := r.FormValue("id")
	if strings.TrimSpace(id) == "" {
		s.fail(w, r, http.StatusBadRequest, "give an event id: its ObjectID's hex, a number, a UUID, a string, or extended JSON")
		return
	}
	show, err := s.cfg.Ops.Show(r.Context(), id)
	if errors.Is(err, admin.ErrNotFound) {
		s.render(w, r, http.StatusNotFound, "event", view{Title: "Event " + id, Data: eventData{Query: id}})
		return
	}
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	d := eventData{Query: id}
	for _, f := range show.Found {
		d.Found = append(d.Found, s.shown(f))
	}
	s.render(w, r, http.StatusOK, "event", view{Title: "Event " + id, Data: d})
}

type eventData struct {
	Query string
	Found []shown
}

type shown struct {
	admin.Shown
	IDJSON  string
	Payload string
	Steps   []step
	Actions []link
	Listed  template.URL // the list it is in
}

type step struct {
	admin.Step
	Took  string
	Class string
}

func (s *server) shown(f admin.Shown) shown {
	out := shown{Shown: f, IDJSON: string(f.ID), Listed: href("/"+f.In, url.Values{"type": {f.Type}})}
	if len(f.Payload) > 0 {
		var buf bytes.Buffer
		if json.Indent(&buf, f.Payload, "", "  ") == nil {
			out.Payload = buf.String()
		} else {
			out.Payload = string(f.Payload)
		}
	}
	for _, st := range f.Timeline {
		c := "ev-" + st.What
		out.Steps = append(out.Steps, step{Step: st, Took: took(st), Class: c})
	}
	if s.cfg.AllowWrites {
		ids := url.Values{"id": {string(f.ID)}}
		switch {
		case f.In == "errors":
			out.Actions = append(out.Actions, link{"Redrive…", href("/confirm/redrive", ids)})
		case f.State == "failed":
			out.Actions = append(out.Actions, link{"Retry now…", href("/confirm/retry", ids)}, link{"Cancel…", href("/confirm/cancel", ids)})
		case f.State == "new":
			out.Actions = append(out.Actions, link{"Cancel…", href("/confirm/cancel", ids)})
		}
	}
	return out
}

func took(st admin.Step) string {
	switch st.What {
	case "inserted", "archived", "redriven", "retried", "cancelled", "due":
		return ""
	}
	if st.TookMs == 0 {
		return "<1ms"
	}
	return (time.Duration(st.TookMs) * time.Millisecond).String()
}

// actions the web view offers, with the collection each reads.
var actions = map[string]struct {
	title, in, verb string
}{
	"retry":   {"Retry now", "events", "make due now"},
	"cancel":  {"Cancel", "events", "cancel"},
	"redrive": {"Redrive", "errors", "redrive"},
	"purge":   {"Purge", "errors", "delete for good"},
}

// actionRequest reads the selection of an action from r: ids, or a
// filter (and for purge, its age).
func (s *server) actionRequest(r *http.Request, name string) (admin.ActionRequest, filter, error) {
	a := actions[name]
	f := readFilter(r, a.in)
	req := admin.ActionRequest{By: s.by(r)}
	ids := r.Form["id"]
	if len(ids) > 0 {
		req.IDs = ids
	} else {
		q, err := f.query(s.cfg.Now())
		if err != nil {
			return req, f, err
		}
		req.Query = q
		req.All = q.Empty()
	}
	if name == "purge" {
		older := strings.TrimSpace(r.FormValue("older"))
		if older == "" {
			older = "30d"
		}
		d, err := admin.ParseDuration(older)
		if err != nil || d <= 0 {
			return req, f, fmt.Errorf("%w: older than %q: a positive duration like 30d or 12h", admin.ErrInvalid, older)
		}
		req.OlderThan = d
	}
	return req, f, nil
}

func (s *server) by(r *http.Request) string {
	if u := userOf(r); u != "" {
		return u + " (" + s.cfg.By + ")"
	}
	return s.cfg.By
}

func (s *server) run(r *http.Request, name string, req admin.ActionRequest) (*admin.ActionResult, error) {
	do := map[string]func(*http.Request, admin.ActionRequest) (*admin.ActionResult, error){
		"retry": func(r *http.Request, a admin.ActionRequest) (*admin.ActionResult, error) {
			return s.cfg.Ops.Retry(r.Context(), a, nil)
		},
		"cancel": func(r *http.Request, a admin.ActionRequest) (*admin.ActionResult, error) {
			return s.cfg.Ops.Cancel(r.Context(), a, nil)
		},
		"redrive": func(r *http.Request, a admin.ActionRequest) (*admin.ActionResult, error) {
			return s.cfg.Ops.Redrive(r.Context(), a, nil)
		},
		"purge": func(r *http.Request, a admin.ActionRequest) (*admin.ActionResult, error) {
			return s.cfg.Ops.Purge(r.Context(), a, nil)
		},
	}[name]
	return do(r, req)
}

// writable answers a write the view does not allow, and says whether it
// may go on.
func (s *server) writable(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("action")
	if _, ok := actions[name]; !ok {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("there is no action %q", name))
		return "", false
	}
	if !s.cfg.AllowWrites {
		s.fail(w, r, http.StatusForbidden, "this web view is read-only: start it with -allow-writes to act on events")
		return "", false
	}
	return name, true
}

// confirm shows what an action would change, and asks.
func (s *server) confirm(w http.ResponseWriter, r *http.Request) {
	name, ok := s.writable(w, r)
	if !ok {
		return
	}
	req, f, err := s.actionRequest(r, name)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	dry := req
	dry.DryRun = true
	res, err := s.run(r, name, dry)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	a := actions[name]
	d := confirmData{Action: name, Title: a.title, Verb: a.verb, In: a.in, Selected: res.Selected, Sample: items(res.Sample),
		Unmatched: res.Unmatched, IDs: req.IDs, F: f, All: req.All, Back: href("/"+a.in, f.values())}
	if len(req.IDs) == 1 {
		d.Back = href("/event", url.Values{"id": req.IDs})
	}
	if !req.Since.IsZero() {
		d.Since = req.Since.UTC().Format(time.RFC3339Nano)
	}
	if !req.Until.IsZero() {
		d.Until = req.Until.UTC().Format(time.RFC3339Nano)
	}
	if name == "purge" {
		d.Older = r.FormValue("older")
		if d.Older == "" {
			d.Older = "30d"
		}
	}
	s.render(w, r, http.StatusOK, "confirm", view{Title: a.title + "?", Nav: a.in, Data: d})
}

type confirmData struct {
	Action, Title, Verb, In string
	Selected                int
	Sample                  []item
	Unmatched               []admin.Skip // ids given that select nothing, and why
	IDs                     []string
	F                       filter
	All                     bool
	Since, Until            string // resolved: the times confirmed
	Older                   string
	Back                    template.URL
}

// act runs a confirmed action.
func (s *server) act(w http.ResponseWriter, r *http.Request) {
	name, ok := s.writable(w, r)
	if !ok {
		return
	}
	if err := s.csrf.check(r); err != nil {
		s.fail(w, r, http.StatusForbidden, err.Error())
		return
	}
	req, f, err := s.actionRequest(r, name)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	if len(req.IDs) == 0 {
		// at most the events confirmed: a set that grew since is not
		// changed beyond the count the reader saw
		n, err := strconv.Atoi(r.FormValue("confirmed"))
		if err != nil || n <= 0 {
			s.fail(w, r, http.StatusBadRequest, "the confirmed count is missing: confirm the action on its page")
			return
		}
		req.Limit = n
	}
	res, err := s.run(r, name, req)
	if res != nil && res.Applied > 0 {
		s.cfg.Logger.Info().Str("action", name).Str("by", req.By).Int("applied", res.Applied).Int("skipped", res.Skipped).
			Strs("ids", res.Changed[:min(len(res.Changed), 20)]).Msg("web view action changed events")
	}
	if err != nil && res == nil {
		s.failErr(w, r, err)
		return
	}
	a := actions[name]
	d := resultData{Title: a.title, Result: res, Back: href("/"+a.in, f.values())}
	if err != nil {
		d.Err = err.Error()
	}
	for _, id := range res.Changed[:min(len(res.Changed), 50)] {
		d.Changed = append(d.Changed, link{id, href("/event", url.Values{"id": {id}})})
	}
	d.Skips = res.Skips[:min(len(res.Skips), 50)]
	d.Unmatched = res.Unmatched[:min(len(res.Unmatched), 50)]
	if len(req.IDs) == 1 {
		d.Back = href("/event", url.Values{"id": req.IDs})
	}
	s.render(w, r, http.StatusOK, "result", view{Title: a.title + ": done", Nav: a.in, Data: d})
}

type resultData struct {
	Title     string
	Result    *admin.ActionResult
	Err       string
	Changed   []link
	Skips     []admin.Skip
	Unmatched []admin.Skip
	Back      template.URL
}
