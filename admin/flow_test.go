package admin_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/flow"
)

// Pause and resume, directly and over HTTP: who paused, when, until when
// and why show in the flow figures and in stats; a mistyped type, an end
// in the past and a resume of nothing are refusals with their codes.
func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	err := b.events().InsertOne(b.ctx, bson.D{{Key: "_id", Value: "e1"}, {Key: "type", Value: "partner"}})
	require.NoError(t, err)
	err = b.events().InsertOne(b.ctx, bson.D{{Key: "_id", Value: "e2"}, {Key: "type", Value: "partner"},
		{Key: "retrigger", Value: bson.D{{Key: "parkedAt", Value: b.now}, {Key: "key", Value: "k"}}}})
	require.NoError(t, err)

	for _, ops := range []admin.Operations{b.admin, b.client} {
		until := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
		st, err := ops.Pause(b.ctx, admin.PauseRequest{Type: "partner", Until: until, Reason: "partner maintenance", By: "ada"})
		require.NoError(t, err)
		require.True(t, st.Held())
		require.Equal(t, "ada", st.Pause.By)
		require.Equal(t, "partner maintenance", st.Pause.Reason)
		require.True(t, st.Pause.Until.Equal(until))
		require.Equal(t, flow.SourceOperator, st.Pause.Source)
		require.EqualValues(t, 2, st.Waiting)
		require.EqualValues(t, 1, st.Parked)

		s, err := ops.Stats(b.ctx)
		require.NoError(t, err)
		require.Len(t, s.Flow, 1)
		require.NotNil(t, s.Flow[0].Pause, "stats show the pause where the type is shown")

		_, err = ops.Pause(b.ctx, admin.PauseRequest{Type: "partnr", By: "ada"})
		require.ErrorIs(t, err, admin.ErrNotFound, "a mistyped type is refused")
		require.Contains(t, err.Error(), "types seen: partner")
		_, err = ops.Pause(b.ctx, admin.PauseRequest{Type: "partner", Until: time.Now().Add(-time.Minute)})
		require.ErrorIs(t, err, admin.ErrInvalid)
		_, err = ops.Pause(b.ctx, admin.PauseRequest{Type: "a.b"})
		require.ErrorIs(t, err, admin.ErrInvalid)

		st, err = ops.Resume(b.ctx, admin.ResumeRequest{Type: "partner", By: "ada"})
		require.NoError(t, err)
		require.False(t, st.Held())
		_, err = ops.Resume(b.ctx, admin.ResumeRequest{Type: "partner"})
		require.ErrorIs(t, err, admin.ErrNoChange, "nothing to resume")
		_, err = ops.Resume(b.ctx, admin.ResumeRequest{Type: "nosuch"})
		require.ErrorIs(t, err, admin.ErrNotFound)
	}
	// A pause that ended by itself holds nothing: resuming it changes nothing.
	require.NoError(t, b.store.SaveFlow(b.ctx, eventstore.FlowState{Type: "ended", Pause: &eventstore.Pause{By: "ada", At: time.Now().Add(-time.Hour), Until: time.Now().Add(-time.Minute), Source: flow.SourceOperator}}))
	_, err = b.admin.Resume(b.ctx, admin.ResumeRequest{Type: "ended"})
	require.ErrorIs(t, err, admin.ErrNoChange, "a pause that ended")

	st, err := b.admin.Pause(b.ctx, admin.PauseRequest{Type: "future", Force: true, By: "ada"})
	require.NoError(t, err, "a type not seen yet, forced")
	require.True(t, st.Held())
	require.True(t, st.Pause.Until.IsZero(), "until resumed")
}

// The HTTP API answers a refusal with its status code, not a 200.
func TestPauseStatusCodes(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	err := b.events().InsertOne(b.ctx, bson.D{{Key: "_id", Value: "e1"}, {Key: "type", Value: "partner"}})
	require.NoError(t, err)
	post := func(op, body string) (int, string) {
		resp, err := http.Post(b.client.BaseURL+"/admin/v1/"+op, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		var e map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&e)
		msg, _ := e["error"].(string)
		return resp.StatusCode, msg
	}
	code, msg := post("pause", `{"type":"partnr"}`)
	require.Equal(t, http.StatusNotFound, code, msg)
	code, _ = post("pause", `{"type":"partner","until":"2001-01-01T00:00:00Z"}`)
	require.Equal(t, http.StatusBadRequest, code)
	code, _ = post("pause", `{"type":"partner","bogus":1}`)
	require.Equal(t, http.StatusBadRequest, code, "an unknown field")
	code, _ = post("resume", `{"type":"partner"}`)
	require.Equal(t, http.StatusConflict, code, "nothing to resume")
	code, _ = post("pause", `{"type":"partner","reason":"r"}`)
	require.Equal(t, http.StatusOK, code)
	code, _ = post("resume", `{"type":"partner"}`)
	require.Equal(t, http.StatusOK, code)
}
