// Package admin is retrigger's operations API: what an operator asks of a
// running deployment (stats, lists, an event's timeline) and what they do
// to it (retry, cancel, redrive, purge). Admin implements it on the event
// store and JetStream; Handler serves it over HTTP and Client calls it
// there, so the retrigger command, the local run's admin endpoint and a
// web view all run the same code. Every operation that changes data is
// conditional (see eventstore's actions): it leaves alone an event a
// consumer runs now, and is safe to interrupt and run again.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/tracing"
)

// Operations are the operator's operations. Admin runs them; Client asks
// a server that runs them. progress, when not nil, is called as an action
// goes through its events.
type Operations interface {
	Stats(ctx context.Context) (*Stats, error)
	List(ctx context.Context, r ListRequest) ([]Item, error)
	Show(ctx context.Context, id string) (*Show, error)
	Retry(ctx context.Context, r ActionRequest, progress func(Progress)) (*ActionResult, error)
	Cancel(ctx context.Context, r ActionRequest, progress func(Progress)) (*ActionResult, error)
	Redrive(ctx context.Context, r ActionRequest, progress func(Progress)) (*ActionResult, error)
	Purge(ctx context.Context, r ActionRequest, progress func(Progress)) (*ActionResult, error)
	// Flow control (flow.go): each type's breaker, pause and limits; pause
	// and resume a type.
	Flow(ctx context.Context) ([]FlowStatus, error)
	Pause(ctx context.Context, r PauseRequest) (*FlowStatus, error)
	Resume(ctx context.Context, r ResumeRequest) (*FlowStatus, error)
}

// Query selects events or archived events. Zero fields select everything.
type Query struct {
	// IDs as people give them (see ParseID): each may stand for ids of
	// several BSON types, and all of them are looked for.
	IDs     []string  `json:"ids,omitempty"`
	Types   []string  `json:"types,omitempty"`
	States  []string  `json:"states,omitempty"`  // new, failed, success, error
	Reasons []string  `json:"reasons,omitempty"` // exhausted, permanent, rejected, crashed, cancelled, application
	Error   string    `json:"error,omitempty"`   // a regular expression (Go syntax) on lastError.message
	Since   time.Time `json:"since,omitzero"`    // events: last transition; errors: archive time
	Until   time.Time `json:"until,omitzero"`
	Limit   int       `json:"limit,omitempty"` // 0: all
}

// Empty reports whether q selects everything.
func (q Query) Empty() bool {
	return len(q.IDs) == 0 && len(q.Types) == 0 && len(q.States) == 0 && len(q.Reasons) == 0 &&
		q.Error == "" && q.Since.IsZero() && q.Until.IsZero()
}

// Errors of a request, which the HTTP API answers with a status code
// (400, 404, 409) and {"error": "..."}, and the retrigger command with a
// non-zero exit.
var (
	// ErrInvalid: a request that cannot be run as given: a malformed
	// filter, or one that can never select anything the operation acts on.
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound: what the request names exists nowhere: ids in neither
	// events nor errors, a type retrigger has never seen.
	ErrNotFound = errors.New("not found")
	// ErrNoChange: the request would change nothing: ids of events the
	// action does not apply to as they are (retrying an event that
	// succeeded, redriving one that is not archived), a resume of a type
	// that is neither paused nor held by its breaker.
	ErrNoChange = errors.New("nothing to change")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// refusal is an error of one of the kinds above whose text is only its
// message: "retry nope: no event or archived event has this id".
type refusal struct {
	kind error
	msg  string
}

func (e *refusal) Error() string { return e.msg }
func (e *refusal) Unwrap() error { return e.kind }

func refuse(kind error, format string, args ...any) error {
	return &refusal{kind: kind, msg: fmt.Sprintf(format, args...)}
}

var stateNames = map[string]event.State{"new": event.StateNew, "success": event.StateSuccess, "failed": event.StateFailed, "error": event.StateError}

// reasonNames are the archive reasons a filter may name.
var reasonNames = map[string]bool{
	string(event.ReasonExhausted): true, string(event.ReasonPermanent): true, string(event.ReasonRejected): true,
	string(event.ReasonCrashed): true, string(event.ReasonCancelled): true, string(event.ReasonApplication): true,
}

// filter is q for the event store.
func (q Query) filter() (eventstore.Filter, error) {
	f := eventstore.Filter{Types: q.Types, Since: q.Since, Until: q.Until}
	for _, text := range q.IDs {
		ids, err := ParseID(text)
		if err != nil {
			return f, invalid("%v", err)
		}
		f.IDs = append(f.IDs, ids...)
	}
	for _, s := range q.States {
		st, ok := stateNames[s]
		if !ok {
			return f, invalid("state %q is none of new, failed, success, error", s)
		}
		f.States = append(f.States, st)
	}
	for _, r := range q.Reasons {
		if !reasonNames[r] {
			return f, invalid("reason %q is none of exhausted, permanent, rejected, crashed, cancelled, application", r)
		}
		f.Reasons = append(f.Reasons, event.Reason(r))
	}
	for _, t := range q.Types {
		if t == "" {
			return f, invalid("an empty type")
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return f, invalid("since %s is not before until %s: the time range selects nothing",
			q.Since.UTC().Format(time.RFC3339), q.Until.UTC().Format(time.RFC3339))
	}
	if q.Error != "" {
		re, err := regexp.Compile(q.Error)
		if err != nil {
			return f, invalid("error pattern: %v", err)
		}
		f.Error = re
	}
	if q.Limit < 0 {
		return f, invalid("limit %d is negative", q.Limit)
	}
	return f, nil
}

// Admin runs the operations on an event store and, for the streams'
// figures, JetStream.
type Admin struct {
	store *eventstore.Store
	js    jetstream.JetStream // nil: no stream figures
	names messaging.Names
	now   func() time.Time
	// tracing makes a span of each action on an event; nil: off.
	tracing *tracing.Tracer
}

// New returns the operations on st; js may be nil (stats then say the
// streams are unknown).
func New(st *eventstore.Store, js jetstream.JetStream, names messaging.Names) *Admin {
	if names == (messaging.Names{}) {
		names = messaging.DefaultNames()
	}
	return &Admin{store: st, js: js, names: names, now: time.Now}
}

// WithTracing makes a span of each retry, cancel and redrive of an event
// with t, whose ids the action's history entry keeps (the event's next run
// links to it). It returns a.
func (a *Admin) WithTracing(t *tracing.Tracer) *Admin {
	a.tracing = t
	return a
}

var _ Operations = (*Admin)(nil)

// Item is one event or archived event in a list.
type Item struct {
	In            string          `json:"in"` // events or errors
	ID            json.RawMessage `json:"id"` // canonical extended JSON: exact
	IDText        string          `json:"idText"`
	Type          string          `json:"type"`
	State         string          `json:"state"`
	Reason        string          `json:"reason,omitempty"`
	Attempts      int64           `json:"attempts"`
	Version       int64           `json:"version"`
	CreatedAt     time.Time       `json:"createdAt,omitzero"`
	UpdatedAt     time.Time       `json:"updatedAt,omitzero"`
	NextAttemptAt time.Time       `json:"nextAttemptAt,omitzero"`
	ArchivedAt    time.Time       `json:"archivedAt,omitzero"`
	LastError     string          `json:"lastError,omitempty"`
	Redrives      int64           `json:"redrives,omitempty"`
	Leased        bool            `json:"running,omitempty"` // a consumer runs it now
	Invalid       string          `json:"invalid,omitempty"` // why the document cannot run
}

func (a *Admin) item(w eventstore.Where, doc bson.Raw) Item {
	ev, err := a.store.Parse(doc)
	it := Item{In: w.String(), ID: idJSON(ev.ID), IDText: FormatID(ev.ID), Type: ev.Type, State: ev.State.String(),
		Reason: string(ev.Reason), Attempts: ev.Attempts, Version: ev.Version, CreatedAt: ev.CreatedAt, UpdatedAt: ev.UpdatedAt,
		NextAttemptAt: ev.NextAttemptAt, ArchivedAt: ev.ArchivedAt, Redrives: ev.Redrives, Leased: ev.Leased(a.now())}
	if ev.LastError != nil {
		it.LastError = ev.LastError.Message
	}
	if err != nil {
		it.Invalid = err.Error()
	}
	return it
}

// ListRequest asks for events (In "events") or archived events ("errors").
type ListRequest struct {
	In string `json:"in"`
	Query
	Oldest bool `json:"oldest,omitempty"` // oldest first; default newest first
}

func where(in string) (eventstore.Where, error) {
	switch in {
	case "events", "":
		return eventstore.InEvents, nil
	case "errors":
		return eventstore.InErrors, nil
	}
	return 0, invalid("%q is neither events nor errors", in)
}

// List lists events or archived events, newest first by their time (see
// Query.Since).
func (a *Admin) List(ctx context.Context, r ListRequest) ([]Item, error) {
	w, err := where(r.In)
	if err != nil {
		return nil, err
	}
	f, err := r.filter()
	if err != nil {
		return nil, err
	}
	docs, err := a.store.List(ctx, w, f, r.Limit, eventstore.ScanOptions{Oldest: r.Oldest})
	if err != nil {
		return nil, err
	}
	out := make([]Item, len(docs))
	for i, doc := range docs {
		out[i] = a.item(w, doc)
	}
	return out, nil
}
