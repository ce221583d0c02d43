package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The command through -server, against an admin API on the embedded
// engine, as a user of the local run calls it.
func TestCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := embedded.Open(ctx, embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close(context.Background()) })
	st := eventstore.New(db, eventstore.Options{})
	srv := httptest.NewServer(admin.Handler(admin.New(st, nil, messaging.DefaultNames()), zerolog.Nop()))
	t.Cleanup(srv.Close)
	at := time.Now().UTC().Add(-2 * time.Hour)
	require.NoError(t, db.Collection("events").InsertOne(ctx, bson.D{{Key: "_id", Value: "s1"}, {Key: "type", Value: "partner"}, {Key: "state", Value: int32(1)}, {Key: "updatedAt", Value: at}}))
	for _, id := range []string{"a", "b"} {
		require.NoError(t, db.Collection("errors").InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "type", Value: "partner"},
			{Key: "state", Value: int32(3)}, {Key: "lastError", Value: bson.D{{Key: "message", Value: "partner: 503"}}},
			{Key: "retrigger", Value: bson.D{{Key: "reason", Value: "exhausted"}, {Key: "archivedAt", Value: at},
				{Key: "history", Value: bson.A{bson.D{{Key: "at", Value: at}, {Key: "outcome", Value: "error"}, {Key: "attempt", Value: int64(3)}, {Key: "error", Value: "partner: 503"}}}}}}}))
	}
	require.NoError(t, db.Collection("events").InsertOne(ctx, bson.D{{Key: "_id", Value: "traced"}, {Key: "type", Value: "partner"},
		{Key: "traceparent", Value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{Key: "retrigger", Value: bson.D{{Key: "history", Value: bson.A{bson.D{{Key: "at", Value: at}, {Key: "outcome", Value: "failed"}, {Key: "attempt", Value: int64(1)},
			{Key: "traceId", Value: "0af7651916cd43dd8448eb211c80319c"}, {Key: "spanId", Value: "b7ad6b7169203331"}}}}}}}))
	run := func(in string, args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := Run(ctx, append([]string{"-server", srv.URL, "-log-format", "json"}, args...), IO{In: strings.NewReader(in), Out: &out, Err: &errOut})
		return code, out.String(), errOut.String()
	}
	tests := []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"stats", []string{"stats"}, 0, "partner", ""},
		{"ls", []string{"ls", "errors", "-type", "partner"}, 0, "partner: 503", ""},
		{"show", []string{"show", "a"}, 0, "archived (exhausted)", ""},
		{"show missing", []string{"show", "zzz"}, 1, "", "no event with id zzz"},
		{"show the traces", []string{"show", "traced"}, 0, "0af7651916cd43dd8448eb211c80319c", ""},
		{"show the traceparent", []string{"show", "traced"}, 0, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""},
		{"dry run", []string{"redrive", "-type", "partner", "-dry-run"}, 0, "redrive would change 2 events", ""},
		{"no filter", []string{"redrive"}, 2, "", "give a filter"},
		{"not a terminal", []string{"redrive", "-type", "partner"}, 2, "", "pass -yes"},
		{"bad flag value", []string{"ls", "errors", "-since", "yesterday-ish"}, 2, "", "-since"},
		{"unknown command", []string{"frobnicate"}, 2, "", "unknown command"},
		{"help", []string{"-help"}, 0, "", "RETRIGGER_SERVER"},
		{"redrive", []string{"redrive", "a", "-yes"}, 0, "redrive: 1 changed, 0 skipped", "changed events"},
		{"redrive again", []string{"redrive", "a", "-yes"}, 1, "", "redrive a: it is new in events: redrive applies to archived events"},
		{"show of a redriven event", []string{"show", "a"}, 0, "(version 1, redriven once)", ""},
		{"retry of an id no event has", []string{"retry", "nope123", "-yes"}, 1, "", "retry nope123: no event or archived event has this id"},
		{"retry of an event that succeeded", []string{"retry", "s1", "-yes"}, 1, "", "retry s1: it is success in events: retry applies to failed events"},
		{"dry run of an id no event has", []string{"cancel", "nope123", "-dry-run"}, 1, "", "no event or archived event has this id"},
		{"a state cancel never changes", []string{"cancel", "-state", "success", "-yes"}, 2, "", "cancel applies to new and failed events: state success selects none of them"},
		{"an unknown state", []string{"retry", "-state", "done", "-yes"}, 2, "", `state "done"`},
		{"a bad regular expression", []string{"retry", "-error", "(", "-yes"}, 2, "", "error pattern"},
		{"a negative age", []string{"ls", "events", "-since", "-2h"}, 2, "", "negative age"},
		{"a preview of nothing lists nothing", []string{"retry", "-type", "nosuch", "-dry-run"}, 0, "retry would change 0 events\n", ""},
		{"one event", []string{"redrive", "b", "-dry-run"}, 0, "redrive would change 1 event:\n", ""},
		{"all, by its flag", []string{"cancel", "-yes"}, 2, "", "give a filter, ids, or -all"},
		{"a filter selecting nothing", []string{"retry", "-type", "nosuch", "-yes"}, 0, "retry: nothing selected", ""},
	}
	for _, tt := range tests { // in order: a case may see what the one before did
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run("", tt.args...)
			require.Equal(t, tt.code, code, "%s%s", out, errOut)
			require.Contains(t, out, tt.out)
			require.Contains(t, errOut, tt.err)
		})
	}
	code, out, _ := run("", "-o", "json", "show", "b")
	require.Zero(t, code)
	var s admin.Show
	require.NoError(t, json.Unmarshal([]byte(out), &s))
	require.Equal(t, "errors", s.Found[0].In)
	n, err := db.Collection("events").Count(ctx, bson.D{{Key: "_id", Value: "a"}})
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "redriven")
}

func TestParsing(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 6, 2, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"36h": now.Add(-36 * time.Hour), "2d": now.Add(-48 * time.Hour),
		"2025-06-01": time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), "2025-06-01T08:00:00Z": time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC),
	} {
		got, err := parseTime(in, now)
		require.NoError(t, err, in)
		require.True(t, got.Equal(want), "%s: %s", in, got)
	}
	for in, want := range map[string]float64{"100/s": 100, "60/m": 1, "5": 5} {
		got, err := parseRate(in)
		require.NoError(t, err, in)
		require.InDelta(t, want, got, 1e-9, in)
	}
	_, err := parseRate("-1/s")
	require.Error(t, err)
}

// A flag that does not exist is one line naming it and how to get help,
// not the whole help.
func TestBadFlagIsOneLine(t *testing.T) {
	t.Parallel()
	var out, errOut strings.Builder
	require.Equal(t, 2, Run(t.Context(), []string{"stats", "-nope"}, IO{In: strings.NewReader(""), Out: &out, Err: &errOut}))
	require.Equal(t, "retrigger: flag provided but not defined: -nope (retrigger -help lists every flag)\n", errOut.String())
	errOut.Reset()
	require.Equal(t, 0, Run(t.Context(), []string{"-help"}, IO{In: strings.NewReader(""), Out: &out, Err: &errOut}))
	require.Contains(t, errOut.String(), "Usage: retrigger")
}

// With nothing due, stats says whether failed events wait out their
// backoff rather than that nothing waits.
func TestStatsSaysWhatWaits(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		events []eventstore.GroupCount
		want   string
	}{
		{nil, "oldest due: none, nothing waits to run\n"},
		{[]eventstore.GroupCount{{Type: "mail", State: "success", Count: 4}}, "oldest due: none, nothing waits to run\n"},
		{[]eventstore.GroupCount{{Type: "mail", State: "failed", Count: 1}}, "oldest due: none due now; 1 failed event waits for its next attempt\n"},
		{[]eventstore.GroupCount{{Type: "mail", State: "failed", Count: 2}, {Type: "sms", State: "failed", Count: 1}}, "oldest due: none due now; 3 failed events wait for their next attempt\n"},
	} {
		var out strings.Builder
		printStats(&out, &admin.Stats{Events: tt.events, StreamsError: "no NATS"}, time.Now())
		require.Contains(t, out.String(), tt.want)
	}
}

// A succeeded event's last error is an earlier attempt's: ls says so.
func TestLsSuccessRowsAreNotFailures(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	printItems(&out, "events", []admin.Item{
		{IDText: "s-1", Type: "mail", State: "success", Attempts: 1, LastError: "smtp: 421"},
		{IDText: "f-1", Type: "mail", State: "failed", Attempts: 1, LastError: "timeout"},
	}, time.Now())
	require.Contains(t, out.String(), "earlier: smtp: 421")
	require.NotContains(t, out.String(), "earlier: timeout")
}
