package admin_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/natsserver"
	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bundle is an embedded store with the admin operations on it, directly
// and through the HTTP API.
type bundle struct {
	ctx    context.Context
	db     store.Database
	store  *eventstore.Store
	admin  *admin.Admin
	client *admin.Client
	now    time.Time
}

func setup(t *testing.T, js jetstream.JetStream, wrap func(store.Database) store.Database) *bundle {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	raw, err := embedded.Open(ctx, embedded.Options{OplogMinSize: 100, OplogMaxSize: 200})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, raw.Close(context.Background())) })
	var db store.Database = raw
	if wrap != nil {
		db = wrap(raw)
	}
	st := eventstore.New(db, eventstore.Options{})
	require.NoError(t, st.EnsureIndexes(ctx))
	a := admin.New(st, js, messaging.Names{})
	srv := httptest.NewServer(admin.Handler(a, zerolog.Nop()))
	t.Cleanup(srv.Close)
	return &bundle{ctx: ctx, db: db, store: st, admin: a, client: &admin.Client{BaseURL: srv.URL}, now: time.Now().UTC().Truncate(time.Millisecond)}
}

func (b *bundle) events() store.Collection { return b.db.Collection("events") }
func (b *bundle) errs() store.Collection   { return b.db.Collection("errors") }

func (b *bundle) count(t *testing.T, c store.Collection) int64 {
	t.Helper()
	n, err := c.Count(b.ctx, bson.D{})
	require.NoError(t, err)
	return n
}

// archived is an archived event as the archiver leaves it.
func archived(id any, typ string, at time.Time) bson.D {
	return bson.D{{Key: "_id", Value: id}, {Key: "type", Value: typ}, {Key: "payload", Value: bson.D{{Key: "n", Value: 1}}},
		{Key: "state", Value: int32(3)}, {Key: "attempts", Value: int64(3)}, {Key: "version", Value: int64(3)},
		{Key: "lastError", Value: bson.D{{Key: "message", Value: "partner: 503 Service Unavailable"}, {Key: "at", Value: at}}},
		{Key: "retrigger", Value: bson.D{{Key: "reason", Value: "exhausted"}, {Key: "archivedAt", Value: at},
			{Key: "history", Value: bson.A{
				bson.D{{Key: "at", Value: at.Add(-time.Minute)}, {Key: "outcome", Value: "failed"}, {Key: "attempt", Value: int64(1)}, {Key: "tookMs", Value: int64(12)}, {Key: "replica", Value: "r1"}, {Key: "error", Value: "partner: 503"}},
				bson.D{{Key: "at", Value: at}, {Key: "outcome", Value: "archived"}, {Key: "error", Value: "exhausted"}},
			}}}}}
}

// failNth fails the nth DeleteOne on the errors collection, as a crash
// between a redrive's two writes would leave it.
type failNth struct {
	store.Database
	n, at int64
	noTxn bool // a deployment without transactions (a standalone server)
}

func (f *failNth) Transact(ctx context.Context, fn func(context.Context) error) error {
	if f.noTxn {
		return store.ErrNoTransactions
	}
	return f.Database.Transact(ctx, fn)
}

func (f *failNth) Collection(name string) store.Collection {
	c := f.Database.Collection(name)
	if name == "errors" {
		return failNthColl{c, f}
	}
	return c
}

type failNthColl struct {
	store.Collection
	f *failNth
}

func (c failNthColl) DeleteOne(ctx context.Context, filter any) (int64, error) {
	if atomic.AddInt64(&c.f.n, 1) == c.f.at {
		return 0, errors.New("injected: the process died here")
	}
	return c.Collection.DeleteOne(ctx, filter)
}

// A redrive of 1,000 archived events, interrupted part-way (once between
// the events copy and the removal of the archive, once by the operator),
// then run again: exactly 1,000 back in events, each once, none left in
// errors; with transactions, and with the ordered writes of a deployment
// without them.
func TestRedriveInterruptedAndRerun(t *testing.T) {
	t.Parallel()
	t.Run("transactions", func(t *testing.T) { t.Parallel(); redriveInterrupted(t, false) })
	t.Run("ordered writes", func(t *testing.T) { t.Parallel(); redriveInterrupted(t, true) })
}

func redriveInterrupted(t *testing.T, noTxn bool) {
	fail := &failNth{at: 150, noTxn: noTxn}
	b := setup(t, nil, func(db store.Database) store.Database { fail.Database = db; return fail })
	const n = 1000
	at := b.now.Add(-24 * time.Hour)
	for i := range n {
		require.NoError(t, b.errs().InsertOne(b.ctx, archived(int64(i), "partner", at.Add(time.Duration(i)*time.Millisecond))))
	}
	req := admin.ActionRequest{Query: admin.Query{Types: []string{"partner"}, Error: "503"}, By: "test"}

	preview, err := b.client.Redrive(b.ctx, admin.ActionRequest{Query: req.Query, DryRun: true}, nil)
	require.NoError(t, err)
	require.Equal(t, n, preview.Selected)
	require.Len(t, preview.Sample, 5)
	require.EqualValues(t, n, b.count(t, b.errs()), "a dry run changes nothing")

	// First run: dies between the two writes of the 150th event.
	_, err = b.admin.Redrive(b.ctx, req, nil)
	require.ErrorContains(t, err, "injected")
	if noTxn {
		require.EqualValues(t, 150, b.count(t, b.events()))
	} else {
		require.EqualValues(t, 149, b.count(t, b.events()), "the 150th's transaction aborted: it is still archived")
	}
	require.EqualValues(t, n-149, b.count(t, b.errs()), "the 150th is never in neither place")

	// Second run: the operator interrupts it (Ctrl-C).
	ctx, cancel := context.WithCancel(b.ctx)
	var last admin.Progress
	_, err = b.admin.Redrive(ctx, req, func(p admin.Progress) {
		last = p
		if p.Done >= 300 {
			cancel()
		}
	})
	require.Error(t, err)
	moved := b.count(t, b.events())
	require.Greater(t, moved, int64(150))
	require.Less(t, moved, int64(n))
	require.EqualValues(t, n, moved+b.count(t, b.errs()), "interrupted between events: each in exactly one place")
	require.Positive(t, last.Done)

	// Third run, through the HTTP API, finishes it.
	res, err := b.client.Redrive(b.ctx, req, nil)
	require.NoError(t, err)
	require.EqualValues(t, n-moved, res.Applied)
	require.Zero(t, res.Skipped)
	require.EqualValues(t, n, b.count(t, b.events()))
	require.Zero(t, b.count(t, b.errs()))
	docs, err := b.events().Find(b.ctx, bson.D{}, store.FindOptions{})
	require.NoError(t, err)
	for _, doc := range docs {
		ev, err := event.Parse(doc)
		require.NoError(t, err)
		require.EqualValues(t, 1, ev.Redrives, "%s redriven once", event.IDString(ev.ID))
		require.Equal(t, event.StateNew, ev.State)
		require.Zero(t, ev.Attempts)
		require.Equal(t, []string{"failed", "archived", "redriven"}, outcomes(ev.History))
		require.Equal(t, "test", ev.History[2].Replica)
	}
	again, err := b.admin.Redrive(b.ctx, req, nil)
	require.NoError(t, err)
	require.Zero(t, again.Selected, "nothing left to redrive")
}

func outcomes(h []event.Attempt) []string {
	out := make([]string, len(h))
	for i, a := range h {
		out[i] = a.Outcome
	}
	return out
}

func TestRetryAndCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	later := b.now.Add(time.Hour)
	failed := func(id string) bson.D {
		return bson.D{{Key: "_id", Value: id}, {Key: "type", Value: "mail"}, {Key: "state", Value: int32(2)}, {Key: "attempts", Value: int64(1)},
			{Key: "version", Value: int64(1)}, {Key: "nextAttemptAt", Value: later}, {Key: "updatedAt", Value: b.now},
			{Key: "lastError", Value: bson.D{{Key: "message", Value: "smtp: 421"}}}}
	}
	for _, id := range []string{"f1", "f2"} {
		require.NoError(t, b.events().InsertOne(b.ctx, failed(id)))
	}
	running := append(failed("f3"), bson.E{Key: "retrigger", Value: bson.D{{Key: "lease", Value: bson.D{
		{Key: "owner", Value: "r9"}, {Key: "token", Value: int64(7)}, {Key: "until", Value: b.now.Add(time.Hour)}}}}})
	require.NoError(t, b.events().InsertOne(b.ctx, running))
	require.NoError(t, b.events().InsertOne(b.ctx, bson.D{{Key: "_id", Value: "n1"}, {Key: "type", Value: "mail"}}))

	// Retry by filter: the two failed ones; the running one is skipped.
	res, err := b.client.Retry(b.ctx, admin.ActionRequest{Query: admin.Query{Types: []string{"mail"}}, By: "ops"}, nil)
	require.NoError(t, err)
	require.Equal(t, 3, res.Selected)
	require.Equal(t, 2, res.Applied)
	require.Equal(t, 1, res.Skipped)
	require.Contains(t, res.Skips[0].Why, "leased")
	for _, id := range []string{"f1", "f2"} {
		ev := get(t, b, b.events(), id)
		require.False(t, ev.NextAttemptAt.After(time.Now().Add(time.Millisecond)), "%s due now", id)
		require.Equal(t, "retried", ev.History[len(ev.History)-1].Outcome)
	}
	require.True(t, get(t, b, b.events(), "f3").NextAttemptAt.Equal(later), "the running event is untouched")

	// Cancel by id: a new and a failed event go to errors; the running
	// one stays.
	res, err = b.admin.Cancel(b.ctx, admin.ActionRequest{Query: admin.Query{IDs: []string{"n1", "f1", "f3"}}, By: "ops"}, nil)
	require.NoError(t, err)
	require.Equal(t, 2, res.Applied)
	require.Equal(t, 1, res.Skipped)
	for _, id := range []string{"n1", "f1"} {
		arch := get(t, b, b.errs(), id)
		require.Equal(t, event.ReasonCancelled, arch.Reason)
		require.Nil(t, get(t, b, b.events(), id))
	}
	require.NotNil(t, get(t, b, b.events(), "f3"))

	// An action without a filter is refused, unless asked for everything.
	_, err = b.client.Cancel(b.ctx, admin.ActionRequest{}, nil)
	require.ErrorIs(t, err, admin.ErrInvalid)
	_, err = b.admin.Redrive(b.ctx, admin.ActionRequest{All: true, DryRun: true}, nil)
	require.NoError(t, err)

	// Purge: archived longer ago than a day.
	require.NoError(t, b.errs().InsertOne(b.ctx, archived("old1", "mail", b.now.Add(-48*time.Hour))))
	require.NoError(t, b.errs().InsertOne(b.ctx, archived("old2", "mail", b.now.Add(-47*time.Hour))))
	res, err = b.client.Purge(b.ctx, admin.ActionRequest{All: true, OlderThan: 72 * time.Hour}, nil)
	require.NoError(t, err)
	require.Zero(t, res.Applied, "nothing is that old")
	res, err = b.client.Purge(b.ctx, admin.ActionRequest{Query: admin.Query{Reasons: []string{"exhausted"}}, OlderThan: 24 * time.Hour}, nil)
	require.NoError(t, err)
	require.Equal(t, 2, res.Applied, "%+v", res)
	require.EqualValues(t, 2, b.count(t, b.errs()), "the cancelled ones, archived just now, stay")
}

func get(t *testing.T, b *bundle, c store.Collection, id any) *event.Event {
	t.Helper()
	doc, err := c.FindOne(b.ctx, bson.D{{Key: "_id", Value: id}})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	require.NoError(t, err)
	ev, err := event.Parse(doc)
	require.NoError(t, err)
	return &ev
}

// show finds an event by an id of any type, typed as plain text or as
// extended JSON, and tells its timeline.
func TestShowAnyIDType(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	oid := bson.NewObjectID()
	uuid := bson.Binary{Subtype: bson.TypeBinaryUUID, Data: []byte{0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0x00}}
	at := b.now.Add(-time.Hour)
	tests := []struct {
		name  string
		id    any
		texts []string
	}{
		{"string", "order-17", []string{"order-17", `"order-17"`}},
		{"int", int32(42), []string{"42", `{"$numberInt":"42"}`}},
		{"long", int64(1) << 40, []string{"1099511627776"}},
		{"ObjectID", oid, []string{oid.Hex(), `{"$oid":"` + oid.Hex() + `"}`}},
		{"UUID", uuid, []string{"123e4567-e89b-12d3-a456-426614174000", `{"$binary":{"base64":"Ej5FZ+ibEtOkVkJmFBdAAA==","subType":"04"}}`}},
	}
	for _, tt := range tests {
		require.NoError(t, b.errs().InsertOne(b.ctx, archived(tt.id, "partner", at)), tt.name)
	}
	require.NoError(t, b.events().InsertOne(b.ctx, bson.D{{Key: "_id", Value: "42"}, {Key: "type", Value: "other"}}))
	for _, tt := range tests {
		for _, text := range tt.texts {
			for _, ops := range []admin.Operations{b.admin, b.client} {
				s, err := ops.Show(b.ctx, text)
				require.NoError(t, err, "%s %s", tt.name, text)
				var found *admin.Shown
				for i := range s.Found {
					if s.Found[i].Type == "partner" {
						found = &s.Found[i]
					}
				}
				require.NotNil(t, found, "%s: %s finds it", tt.name, text)
				require.Equal(t, "errors", found.In)
				require.Equal(t, []string{"failed", "archived"}, whats(found.Timeline), "%s", tt.name)
				run := found.Timeline[len(found.Timeline)-2]
				require.EqualValues(t, 12, run.TookMs)
				require.EqualValues(t, 1, run.Attempt)
				require.Equal(t, "r1", run.Replica)
				require.Equal(t, "partner: 503", run.Error)
				back, err := admin.ParseID(found.IDText)
				require.NoError(t, err)
				require.Equal(t, tt.id != nil, len(back) > 0)
			}
		}
	}
	s, err := b.admin.Show(b.ctx, "42")
	require.NoError(t, err)
	require.Len(t, s.Found, 2, "plain 42 is the int 42 and the string \"42\": both exist")
	s, err = b.admin.Show(b.ctx, `"42"`)
	require.NoError(t, err)
	require.Len(t, s.Found, 1, "a JSON string is only a string")
	require.Equal(t, "other", s.Found[0].Type)
}

func whats(steps []admin.Step) []string {
	out := make([]string, 0, len(steps))
	for _, s := range steps {
		if s.What != "inserted" {
			out = append(out, s.What)
		}
	}
	return out
}

// Stats count by state, type and reason, find the oldest due event, and
// read the streams.
func TestStats(t *testing.T) {
	t.Parallel()
	ns, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	names := messaging.DefaultNames()
	_, err = messaging.EnsureStreams(t.Context(), js, names, messaging.StreamOptions{}, true)
	require.NoError(t, err)
	_, _, err = messaging.EnsureConsumer(t.Context(), js, names.EventsStream(), names.WorkersConfig("mail", messaging.ConsumerOptions{}))
	require.NoError(t, err)
	_, err = js.Publish(t.Context(), names.EventSubject("fax"), []byte("x"))
	require.NoError(t, err)

	b := setup(t, js, nil)
	require.NoError(t, b.events().InsertOne(b.ctx, bson.D{{Key: "_id", Value: 1}, {Key: "type", Value: "mail"}, {Key: "createdAt", Value: b.now.Add(-time.Minute)}}))
	require.NoError(t, b.events().InsertOne(b.ctx, bson.D{{Key: "_id", Value: 2}, {Key: "type", Value: "mail"}, {Key: "state", Value: int32(1)}}))
	require.NoError(t, b.errs().InsertOne(b.ctx, archived(3, "mail", b.now.Add(-10*time.Minute))))
	require.NoError(t, b.errs().InsertOne(b.ctx, archived(4, "mail", b.now.Add(-3*time.Hour))))
	for _, ops := range []admin.Operations{b.admin, b.client} {
		s, err := ops.Stats(b.ctx)
		require.NoError(t, err)
		require.Equal(t, []eventstore.GroupCount{{Type: "mail", State: "new", Count: 1}, {Type: "mail", State: "success", Count: 1}}, s.Events)
		require.Equal(t, []eventstore.GroupCount{{Type: "mail", Reason: "exhausted", Count: 2}}, s.Errors)
		require.NotNil(t, s.OldestDue)
		require.Equal(t, "1", s.OldestDue.IDText)
		require.EqualValues(t, 1, s.ArchivedLastHour)
		require.EqualValues(t, 2, s.ArchivedLastDay)
		require.Empty(t, s.StreamsError)
		require.Len(t, s.Streams, 2)
		require.EqualValues(t, 1, s.Streams[0].Messages)
		require.Equal(t, "RETRIGGER_WORKERS_mail", s.Streams[0].Consumers[0].Name)
		require.Equal(t, map[string]uint64{"fax": 1}, s.Unserved)
	}
}

// The HTTP API refuses what a browser page could send.
func TestHandlerRefusesForeignRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	post := func(contentType, origin string) int {
		req, err := http.NewRequest(http.MethodPost, b.client.BaseURL+"/admin/v1/cancel", strings.NewReader(`{"all":true}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", contentType)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusUnsupportedMediaType, post("application/x-www-form-urlencoded", ""))
	require.Equal(t, http.StatusForbidden, post("application/json", "http://evil.example"))
	require.Equal(t, http.StatusOK, post("application/json", ""))
}
