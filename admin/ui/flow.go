package ui

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/shared/flow"
)

// flowRow is a type's flow control on the overview.
type flowRow struct {
	admin.FlowStatus
	Href    string // the type's waiting events
	Held    bool
	Until   string // a pause's end as the form shows it
	Retried bool   // paused by a partner's Retry-After
}

func flowRows(st *admin.Stats) []flowRow {
	var out []flowRow
	for _, f := range st.Flow {
		r := flowRow{FlowStatus: f, Held: f.Held(), Href: "/events?" + url.Values{"type": {f.Type}, "state": {"new", "failed"}}.Encode()}
		if p := f.Pause; p != nil {
			r.Retried = p.Source == flow.SourceRetryAfter
			if !p.Until.IsZero() {
				r.Until = p.Until.UTC().Format(time.RFC3339)
			}
		}
		out = append(out, r)
	}
	return out
}

// flowAction pauses or resumes a type, from the overview's forms.
func (s *server) flowAction(w http.ResponseWriter, r *http.Request) {
	op := r.PathValue("op")
	if op != "pause" && op != "resume" {
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("there is no flow action %q", op))
		return
	}
	if !s.cfg.AllowWrites {
		s.fail(w, r, http.StatusForbidden, "this web view is read-only: start it with -allow-writes to pause or resume a type")
		return
	}
	if err := s.csrf.check(r); err != nil {
		s.fail(w, r, http.StatusForbidden, err.Error())
		return
	}
	typ := strings.TrimSpace(r.FormValue("type"))
	by := s.by(r)
	var err error
	if op == "pause" {
		req := admin.PauseRequest{Type: typ, Reason: strings.TrimSpace(r.FormValue("reason")), By: by}
		if req.Until, err = admin.ParseUntil(strings.TrimSpace(r.FormValue("until")), s.cfg.Now()); err != nil {
			s.fail(w, r, http.StatusBadRequest, "until "+err.Error())
			return
		}
		_, err = s.cfg.Ops.Pause(r.Context(), req)
	} else {
		_, err = s.cfg.Ops.Resume(r.Context(), admin.ResumeRequest{Type: typ, By: by})
	}
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	s.cfg.Logger.Info().Str("type", typ).Str("by", by).Msg("web view: " + op + "d a type")
	http.Redirect(w, r, "/?"+url.Values{"flow": {op + "d " + typ}}.Encode()+"#flow", http.StatusSeeOther)
}
