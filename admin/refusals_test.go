package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/admin"
)

// The HTTP API says no with a status code and a machine-readable body:
// 400 for a malformed request or a filter that can never select anything
// the action changes, 404 for ids no event has, 409 for events the action
// does not apply to; and the Client gives back the matching sentinel.
func TestHTTPRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	require.NoError(t, b.events().InsertOne(b.ctx, bson.D{{Key: "_id", Value: "s1"}, {Key: "type", Value: "mail"}, {Key: "state", Value: int32(1)}, {Key: "updatedAt", Value: b.now}}))
	require.NoError(t, b.events().InsertOne(b.ctx, bson.D{{Key: "_id", Value: "n1"}, {Key: "type", Value: "mail"}}))
	require.NoError(t, b.errs().InsertOne(b.ctx, archived("a1", "mail", b.now)))
	tests := []struct {
		name, op, body string
		status         int
		sentinel       error
		says           string
	}{
		{"a bad regular expression", "retry", `{"error": "("}`, 400, admin.ErrInvalid, "error pattern"},
		{"an unknown state", "retry", `{"states": ["nope"]}`, 400, admin.ErrInvalid, `state "nope"`},
		{"an unknown reason", "redrive", `{"reasons": ["nope"]}`, 400, admin.ErrInvalid, `reason "nope"`},
		{"an empty id", "cancel", `{"ids": [""]}`, 400, admin.ErrInvalid, "an empty id"},
		{"an empty type", "cancel", `{"types": [""]}`, 400, admin.ErrInvalid, "an empty type"},
		{"a negative age", "purge", `{"all": true, "olderThan": -1000000000}`, 400, admin.ErrInvalid, "positive older-than"},
		{"a negative limit", "retry", `{"types": ["mail"], "limit": -1}`, 400, admin.ErrInvalid, "limit -1"},
		{"a negative rate", "redrive", `{"types": ["mail"], "rate": -1}`, 400, admin.ErrInvalid, "rate -1"},
		{"an empty time range", "retry", `{"since": "2025-06-02T00:00:00Z", "until": "2025-06-01T00:00:00Z"}`, 400, admin.ErrInvalid, "selects nothing"},
		{"no filter", "cancel", `{}`, 400, admin.ErrInvalid, "-all"},
		{"a state cancel never changes", "cancel", `{"states": ["success"]}`, 400, admin.ErrInvalid, "cancel applies to new and failed events: state success selects none of them"},
		{"a state retry never changes", "retry", `{"states": ["new", "failed"]}`, 400, admin.ErrInvalid, "state new"},
		{"a reason on events", "retry", `{"reasons": ["exhausted"]}`, 400, admin.ErrInvalid, "archived events only"},
		{"an unknown field", "retry", `{"idz": ["x"]}`, 400, admin.ErrInvalid, "idz"},
		{"a list with an unknown state", "list", `{"in": "events", "states": ["nope"]}`, 400, admin.ErrInvalid, `state "nope"`},
		{"ids no event has", "retry", `{"ids": ["nope123"]}`, 404, admin.ErrNotFound, "retry nope123: no event or archived event has this id"},
		{"a dry run of ids no event has", "redrive", `{"ids": ["nope123", "nope456"], "dryRun": true}`, 404, admin.ErrNotFound, "nope456"},
		{"show of an id no event has", "show", `{"id": "nope123"}`, 404, admin.ErrNotFound, "no event with id nope123"},
		{"retry of an event that succeeded", "retry", `{"ids": ["s1"]}`, 409, admin.ErrNoChange, "s1: it is success in events: retry applies to failed events"},
		{"cancel of an archived event", "cancel", `{"ids": ["a1"]}`, 409, admin.ErrNoChange, "archived in errors (exhausted)"},
		{"redrive of an event not archived", "redrive", `{"ids": ["n1", "nope"]}`, 409, admin.ErrNoChange, "n1: it is new in events: redrive applies to archived events"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(b.ctx, http.MethodPost, b.client.BaseURL+"/admin/v1/"+tt.op, strings.NewReader(tt.body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, tt.status, resp.StatusCode, "%s", raw)
			require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			var body map[string]string
			require.NoError(t, json.Unmarshal(raw, &body), "%s", raw)
			require.Len(t, body, 1, "only {\"error\": ...}: %s", raw)
			require.Contains(t, body["error"], tt.says)

			if tt.name == "an unknown field" {
				return // the Client sends only fields it knows
			}
			var cerr error
			var in struct{ ID string }
			switch tt.op {
			case "show":
				require.NoError(t, json.Unmarshal([]byte(tt.body), &in))
				_, cerr = b.client.Show(b.ctx, in.ID)
			case "list":
				var r admin.ListRequest
				require.NoError(t, json.Unmarshal([]byte(tt.body), &r))
				_, cerr = b.client.List(b.ctx, r)
			default:
				var r admin.ActionRequest
				require.NoError(t, json.Unmarshal([]byte(tt.body), &r))
				_, cerr = map[string]func() (*admin.ActionResult, error){
					"retry":   func() (*admin.ActionResult, error) { return b.client.Retry(b.ctx, r, nil) },
					"cancel":  func() (*admin.ActionResult, error) { return b.client.Cancel(b.ctx, r, nil) },
					"redrive": func() (*admin.ActionResult, error) { return b.client.Redrive(b.ctx, r, nil) },
					"purge":   func() (*admin.ActionResult, error) { return b.client.Purge(b.ctx, r, nil) },
				}[tt.op]()
			}
			require.ErrorIs(t, cerr, tt.sentinel)
			require.Contains(t, cerr.Error(), tt.says)
		})
	}
	require.Equal(t, int64(2), b.count(t, b.events()), "nothing changed")
	require.Equal(t, int64(1), b.count(t, b.errs()))
}

// Of ids some of which select events, the action changes those and says
// why it passed the others by.
func TestActionOnSomeIDs(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	require.NoError(t, b.errs().InsertOne(b.ctx, archived("a1", "mail", b.now)))
	require.NoError(t, b.events().InsertOne(b.ctx, bson.D{{Key: "_id", Value: "s1"}, {Key: "type", Value: "mail"}, {Key: "state", Value: int32(1)}}))
	res, err := b.client.Redrive(b.ctx, admin.ActionRequest{Query: admin.Query{IDs: []string{"a1", "s1", "nope"}}, By: "ops"}, nil)
	require.NoError(t, err)
	require.Equal(t, 1, res.Selected)
	require.Equal(t, 1, res.Applied)
	require.Len(t, res.Unmatched, 2)
	require.Equal(t, "s1", res.Unmatched[0].IDText)
	require.Contains(t, res.Unmatched[0].Why, "success in events")
	require.Equal(t, "nope", res.Unmatched[1].IDText)
	require.Contains(t, res.Unmatched[1].Why, "no event")
}

// A preview that selects nothing shows nothing: not the first events of
// the collection.
func TestPreviewOfNothingShowsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	for _, id := range []string{"s1", "s2", "s3"} {
		require.NoError(t, b.events().InsertOne(b.ctx, bson.D{{Key: "_id", Value: id}, {Key: "type", Value: "mail"}, {Key: "state", Value: int32(1)}, {Key: "updatedAt", Value: b.now}}))
	}
	require.NoError(t, b.errs().InsertOne(b.ctx, archived("a1", "mail", b.now)))
	for _, ops := range []admin.Operations{b.admin, b.client} {
		for name, act := range map[string]func(admin.ActionRequest) (*admin.ActionResult, error){
			"retry":   func(r admin.ActionRequest) (*admin.ActionResult, error) { return ops.Retry(b.ctx, r, nil) },
			"cancel":  func(r admin.ActionRequest) (*admin.ActionResult, error) { return ops.Cancel(b.ctx, r, nil) },
			"redrive": func(r admin.ActionRequest) (*admin.ActionResult, error) { return ops.Redrive(b.ctx, r, nil) },
		} {
			res, err := act(admin.ActionRequest{Query: admin.Query{Types: []string{"nosuch"}}, DryRun: true})
			require.NoError(t, err, name)
			require.Zero(t, res.Selected, name)
			require.Empty(t, res.Sample, "%s: a preview of nothing lists nothing", name)
		}
	}
}
