package cli

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

// retrigger pause, resume and flow, as an operator types them, mistakes
// included: each mistake is a non-zero exit naming what was wrong.
func TestPauseCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := embedded.Open(ctx, embedded.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close(context.Background()) })
	st := eventstore.New(db, eventstore.Options{})
	srv := httptest.NewServer(admin.Handler(admin.New(st, nil, messaging.DefaultNames()), zerolog.Nop()))
	t.Cleanup(srv.Close)
	require.NoError(t, db.Collection("events").InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "type", Value: "partner"}}))
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := Run(ctx, append([]string{"-server", srv.URL, "-log-format", "json", "-by", "ada"}, args...),
			IO{In: strings.NewReader(""), Out: &out, Err: &errOut, Now: func() time.Time { return now }})
		return code, out.String(), errOut.String()
	}
	tests := []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"mistyped type", []string{"pause", "partnr"}, 1, "", `no event, archive or flow state of type "partnr" (types seen: partner)`},
		{"no type", []string{"pause"}, 2, "", "pause takes one event type"},
		{"bad until", []string{"pause", "partner", "-until", "soonish"}, 2, "", "-until"},
		{"until passed", []string{"pause", "partner", "-until", "2020-01-01"}, 2, "", "has passed"},
		{"pause", []string{"pause", "partner", "-until", "30m", "-reason", "partner maintenance, back at 11"}, 0, "by ada", ""},
		{"shown", []string{"flow"}, 0, "partner maintenance, back at 11", ""},
		{"in stats", []string{"stats"}, 0, "until 2026-12-02 10:30:00", ""},
		{"resume", []string{"resume", "partner"}, 0, "partner", ""},
		{"nothing to resume", []string{"resume", "partner"}, 1, "", "not paused"},
		{"resume takes no end", []string{"resume", "partner", "-until", "1h"}, 2, "", "-until, -reason and -force are pause's"},
		{"flow takes no reason", []string{"flow", "-reason", "x"}, 2, "", "-until, -reason and -force are pause's"},
		{"forced", []string{"pause", "later", "-force"}, 0, "until resumed", ""},
	}
	for _, tt := range tests {
		code, out, errOut := run(tt.args...)
		require.Equal(t, tt.code, code, "%s: %s%s", tt.name, out, errOut)
		require.Contains(t, out, tt.out, tt.name)
		require.Contains(t, errOut, tt.err, tt.name)
	}
}
