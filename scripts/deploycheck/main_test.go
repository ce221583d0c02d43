package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/retrigger/retrigger/shared/natsserver"
	"github.com/retrigger/retrigger/shared/store/mongostore/wiretest"
)

// deploycheck drops the database it uses: it refuses one whose name does
// not say it is scratch, before connecting to anything.
func TestRefusesADatabaseThatMayHoldData(t *testing.T) {
	t.Parallel()
	var out, errs bytes.Buffer
	code := run([]string{"-mongodb-uri", "mongodb://127.0.0.1:1/", "-mongodb-database", "retrigger"}, &out, &errs)
	require.Equal(t, 2, code)
	require.Contains(t, errs.String(), `invalid -mongodb-database (RETRIGGER_MONGODB_DATABASE): "retrigger" does not contain "scratch"`)
	require.Empty(t, out.String())
}

// On a wire-compatible server (without change streams) and a real
// nats-server, every check that applies passes, those that do not say why
// they are skipped (the write concern, the plans, the drop under a live
// relay), and the scratch data is gone afterwards.
func TestChecksAWireServer(t *testing.T) {
	t.Parallel()
	wiretest.Run(t, func(t *testing.T, s *wiretest.Server) {
		ns, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: t.TempDir()})
		require.NoError(t, err)
		t.Cleanup(ns.Shutdown)
		var out, errs bytes.Buffer
		code := run([]string{"-mongodb-uri", s.URI, "-nats-url", ns.ClientURL(), "-mongodb-database", "deploycheck_scratch",
			"-disable-change-streams", "-seed", "2000", "-timeout", "30s"}, &out, &errs)
		t.Log(out.String())
		require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out.String(), errs.String())
		for _, want := range []string{"ok    an event runs and succeeds", "ok    a failing event is retried, then archived into errors",
			"ok    the events stream deleted: created again, new events run", "deploycheck: every check that ran passed; 3 skipped"} {
			require.Contains(t, out.String(), want)
		}
		// jongodb has no explain: the plans are skipped, saying so.
		require.True(t, strings.Count(out.String(), "reads an index") >= 4 || strings.Contains(out.String(), "skip  the sweep queries' plans"), out.String())

		// Nothing is left behind.
		client, err := mongo.Connect(options.Client().ApplyURI(s.URI))
		require.NoError(t, err)
		defer client.Disconnect(context.Background())
		for _, name := range []string{"events", "errors", "retrigger_checkpoints", "retrigger_flow"} {
			n, err := client.Database("deploycheck_scratch").Collection(name).CountDocuments(context.Background(), bson.D{})
			require.NoError(t, err)
			require.Zero(t, n, "%s is empty", name)
		}
		streams := 0
		js, err := jetstream.New(mustConnect(t, ns.ClientURL()))
		require.NoError(t, err)
		for range js.ListStreams(context.Background()).Info() {
			streams++
		}
		require.Zero(t, streams, "the scratch streams are deleted")
	})
}

// On a server without change streams, run without -disable-change-streams,
// deploycheck says so at once and names the flag, as the producer does,
// instead of waiting out -timeout and blaming reachability. It says which
// write concern it found, or why it cannot.
func TestNamesTheFlagWithoutChangeStreams(t *testing.T) {
	t.Parallel()
	wiretest.Run(t, func(t *testing.T, s *wiretest.Server) {
		ns, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: t.TempDir()})
		require.NoError(t, err)
		t.Cleanup(ns.Shutdown)
		var out, errs bytes.Buffer
		code := run([]string{"-mongodb-uri", s.URI + "&w=1", "-nats-url", ns.ClientURL(), "-mongodb-database", "deploycheck_scratch"}, &out, &errs)
		t.Log(out.String())
		require.Equal(t, 1, code)
		require.Contains(t, out.String(), "FAIL  the server has no change streams")
		require.Contains(t, out.String(), "run deploycheck with -disable-change-streams, and the producer with -disable-change-streams")
		require.NotContains(t, out.String(), "reachable")
		require.Regexp(t, `(?m)^(ok|warn|skip) +default write concern`, out.String())
		require.Contains(t, out.String(), "warn  the connection string's write concern: w=1 overrides")
	})
}

func mustConnect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}
