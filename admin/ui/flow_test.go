package ui

import (
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/flow"
)

// The overview shows each type's breaker and pause, and pauses and resumes
// a type from its forms, with the session's token; a read-only view
// offers no form and refuses the post.
func TestFlowSection(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.AllowWrites = true })
	require.NoError(t, b.events.InsertOne(b.ctx, bson.D{{Key: "_id", Value: "e1"}, {Key: "type", Value: "partner"}}))
	_, page := b.get(t, "/")
	require.Regexp(t, `<tr data-type="partner" data-breaker="closed">`, page)
	token := regexp.MustCompile(`action="/flow/pause"><input type="hidden" name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	require.NotNil(t, token, "a pause form with the token")

	status, _ := b.post(t, "/flow/pause", url.Values{"type": {"partner"}, "until": {"30m"}, "reason": {"partner maintenance"}}, nil)
	require.Equal(t, 403, status, "no token")
	status, body := b.post(t, "/flow/pause", url.Values{"csrf": {token[1]}, "type": {"partnr"}}, nil)
	require.Equal(t, 404, status, "a mistyped type: %s", body)
	status, body = b.post(t, "/flow/pause", url.Values{"csrf": {token[1]}, "type": {"partner"}, "until": {"sometime"}}, nil)
	require.Equal(t, 400, status, body)
	status, _ = b.post(t, "/flow/pause", url.Values{"csrf": {token[1]}, "type": {"partner"}, "until": {"30m"}, "reason": {"partner maintenance"}}, nil)
	require.Equal(t, 303, status)

	all, err := flow.Read(b.ctx, b.store, time.Now())
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.NotNil(t, all[0].Pause)
	require.WithinDuration(t, time.Now().Add(30*time.Minute), all[0].Pause.Until, time.Minute)
	_, page = b.get(t, "/?flow=paused+partner")
	require.Contains(t, page, "<strong>paused</strong> by")
	require.Contains(t, page, "partner maintenance")
	require.Contains(t, page, `action="/flow/resume"`)

	status, _ = b.post(t, "/flow/resume", url.Values{"csrf": {token[1]}, "type": {"partner"}}, nil)
	require.Equal(t, 303, status)
	all, err = flow.Read(b.ctx, b.store, time.Now())
	require.NoError(t, err)
	require.Nil(t, all[0].Pause)
	status, body = b.post(t, "/flow/resume", url.Values{"csrf": {token[1]}, "type": {"partner"}}, nil)
	require.Equal(t, 409, status, "nothing to resume: %s", body)

	ro := setup(t, nil)
	require.NoError(t, ro.events.InsertOne(ro.ctx, bson.D{{Key: "_id", Value: "e1"}, {Key: "type", Value: "partner"}}))
	_, page = ro.get(t, "/")
	require.NotContains(t, page, "/flow/pause", "read-only: no form")
	status, _ = ro.post(t, "/flow/pause", url.Values{"type": {"partner"}}, nil)
	require.Equal(t, 403, status)
}
