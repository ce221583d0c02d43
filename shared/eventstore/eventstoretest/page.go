package eventstoretest

import (
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
)

// The web view's pages and activity.

// pageIDs walks the pages of w from the newest, older and older, and
// returns each page's ids (event.Key); then it walks back from the last
// page, newer and newer, and checks that it meets the same pages.
func (b *bundle) pageIDs(t *testing.T, w eventstore.Where, f eventstore.Filter, limit int) [][]string {
	t.Helper()
	var pages [][]string
	var after *eventstore.PageKey
	var last *eventstore.Page
	for range 1000 {
		p, err := b.store.Page(b.ctx, w, eventstore.PageRequest{Filter: f, After: after, Limit: limit})
		require.NoError(t, err)
		require.False(t, p.Partial)
		require.LessOrEqual(t, len(p.Docs), limit)
		if after == nil {
			require.Nil(t, p.Newer, "the first page has none newer")
		} else {
			require.NotNil(t, p.Newer)
		}
		if len(p.Docs) > 0 || after == nil {
			pages = append(pages, keys(p.Docs))
		}
		last = p
		if p.Older == nil {
			break
		}
		// the key survives a URL
		k, err := eventstore.ParsePageKey(p.Older.String())
		require.NoError(t, err)
		after = &k
	}
	require.Nil(t, last.Older, "paging ends")
	// back, newer
	if len(pages) > 1 {
		before := last.Newer
		for i := len(pages) - 2; i >= 0; i-- {
			require.NotNil(t, before, "page %d has one newer", i+1)
			p, err := b.store.Page(b.ctx, w, eventstore.PageRequest{Filter: f, Before: before, Limit: limit})
			require.NoError(t, err)
			require.Equal(t, pages[i], keys(p.Docs), "page %d, read backwards", i)
			before = p.Newer
		}
		require.Nil(t, before, "the newest page has none newer")
	}
	return pages
}

func keys(docs []bson.Raw) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = event.IDString(d.Lookup("_id"))
	}
	return out
}

func flat(pages [][]string) []string {
	var out []string
	for _, p := range pages {
		out = append(out, p...)
	}
	return out
}

// Pages walk every document once, newest first by time then id, with
// the documents without a time last, across ids of every BSON type, ties
// of time and page boundaries between type brackets.
func testPageOrder(t *testing.T, b *bundle) {
	at := b.now.Add(-time.Hour)
	put := func(id any, state int32, updated *time.Time) {
		doc := job(id, bson.E{Key: "state", Value: state})
		if updated != nil {
			doc = append(doc, bson.E{Key: "updatedAt", Value: *updated})
		}
		b.insert(t, doc)
	}
	earlier := at.Add(-time.Minute)
	oid := bson.NewObjectIDFromTimestamp(at)
	// at one time, ids of four brackets: descending, ObjectID > strings > numbers
	put("a", 1, &at)
	put(int64(3), 2, &at)
	put(oid, 1, &at)
	put("b", 2, &at)
	put(int32(5), 1, &at)
	put("z", 1, &earlier)
	// never run: after every dated one
	put("u1", 0, nil)
	put(int32(9), 0, nil)
	put("u2", 0, nil)
	want := []string{oid.Hex(), "b", "a", "5", "3", "z", "u2", "u1", "9"}
	for _, limit := range []int{1, 2, 3, 4, 50} {
		pages := b.pageIDs(t, eventstore.InEvents, eventstore.Filter{}, limit)
		require.Equal(t, want, flat(pages), "page size %d", limit)
	}
	tests := []struct {
		name string
		f    eventstore.Filter
		want []string
	}{
		{"a state", eventstore.Filter{States: []event.State{event.StateFailed}}, []string{"b", "3"}},
		{"new: the never run", eventstore.Filter{States: []event.State{event.StateNew}}, []string{"u2", "u1", "9"}},
		{"a time range leaves out the never run", eventstore.Filter{Since: earlier}, []string{oid.Hex(), "b", "a", "5", "3", "z"}},
		{"until", eventstore.Filter{Until: at}, []string{"z"}},
		{"a type", eventstore.Filter{Types: []string{"job"}}, want},
		{"no such type", eventstore.Filter{Types: []string{"mail"}}, nil},
	}
	for _, tt := range tests {
		for _, limit := range []int{1, 2, 50} {
			require.Equal(t, tt.want, flat(b.pageIDs(t, eventstore.InEvents, tt.f, limit)), "%s, page size %d", tt.name, limit)
		}
	}
}

// Archived events of every id type, many at one time: every one once,
// by archive time, filtered by type, reason, error text and time.
func testPageArchive(t *testing.T, b *bundle) {
	at := b.now.Add(-time.Hour)
	var all []string
	for i, v := range SampleIDs() {
		typ, reason, msg := "mail", event.ReasonExhausted, "smtp: 421"
		if i%3 == 0 {
			typ, reason, msg = "partner", event.ReasonPermanent, "partner: 503"
		}
		id := b.archive(t, v, typ, reason, msg, at.Add(time.Duration(i%2)*time.Minute))
		all = append(all, event.IDString(id))
	}
	count := func(f eventstore.Filter) int {
		n, err := b.store.Count(b.ctx, eventstore.InErrors, f)
		require.NoError(t, err)
		return int(n)
	}
	for _, f := range []eventstore.Filter{
		{},
		{Types: []string{"partner"}},
		{Reasons: []event.Reason{event.ReasonExhausted}},
		{Types: []string{"mail"}, Reasons: []event.Reason{event.ReasonExhausted}},
		{Error: regexp.MustCompile(`503`)},
		{Since: at.Add(time.Minute)},
	} {
		for _, limit := range []int{1, 4, 50} {
			got := flat(b.pageIDs(t, eventstore.InErrors, f, limit))
			require.Len(t, got, count(f), "%+v, page size %d: each once", f, limit)
			seen := map[string]bool{}
			for _, id := range got {
				require.False(t, seen[id], "%s twice", id)
				seen[id] = true
			}
		}
	}
	require.Len(t, flat(b.pageIDs(t, eventstore.InErrors, eventstore.Filter{}, 5)), len(all))
}

// A page filtered by error text stops after MaxExamined documents, and
// says where to go on.
func testPageExamineBound(t *testing.T, b *bundle) {
	for i := range 10 {
		msg := "timeout"
		if i == 0 {
			msg = "needle" // the oldest
		}
		b.archive(t, i, "job", event.ReasonExhausted, msg, b.now.Add(time.Duration(i)*time.Second))
	}
	f := eventstore.Filter{Error: regexp.MustCompile("needle")}
	p, err := b.store.Page(b.ctx, eventstore.InErrors, eventstore.PageRequest{Filter: f, Limit: 5, MaxExamined: 4})
	require.NoError(t, err)
	require.True(t, p.Partial)
	require.Empty(t, p.Docs)
	require.Equal(t, 4, p.Examined)
	require.NotNil(t, p.Older, "go on from where it stopped")
	var found []string
	for p.Older != nil {
		p, err = b.store.Page(b.ctx, eventstore.InErrors, eventstore.PageRequest{Filter: f, Limit: 5, MaxExamined: 4, After: p.Older})
		require.NoError(t, err)
		found = append(found, keys(p.Docs)...)
	}
	require.Equal(t, []string{"0"}, found)
}

// Activity counts successes by the last transition, failures by the last
// failed run (in events and archived), and archives by the archive time.
func testActivity(t *testing.T, b *bundle) {
	from := b.now.Add(-2 * time.Minute)
	tm := func(d time.Duration) time.Time { return from.Add(d) }
	failedAt := func(d time.Duration) bson.E {
		return bson.E{Key: "lastError", Value: bson.D{{Key: "message", Value: "boom"}, {Key: "at", Value: tm(d)}}}
	}
	b.insert(t, job("s1", bson.E{Key: "state", Value: int32(1)}, bson.E{Key: "updatedAt", Value: tm(10 * time.Second)}))
	b.insert(t, job("s2", bson.E{Key: "state", Value: int32(1)}, bson.E{Key: "updatedAt", Value: tm(70 * time.Second)}, failedAt(65*time.Second))) // failed, then succeeded
	b.insert(t, job("s3", bson.E{Key: "state", Value: int32(1)}, bson.E{Key: "updatedAt", Value: tm(time.Minute)}))
	b.insert(t, job("f1", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "updatedAt", Value: tm(90 * time.Second)}, failedAt(90*time.Second)))
	b.insert(t, job("f0", bson.E{Key: "state", Value: int32(2)}, bson.E{Key: "updatedAt", Value: tm(-time.Second)}, failedAt(-time.Second))) // before
	b.insert(t, job("old", bson.E{Key: "state", Value: int32(1)}, bson.E{Key: "updatedAt", Value: tm(-time.Second)}))
	b.insert(t, job("n1"))
	b.archive(t, "a1", "job", event.ReasonExhausted, "x", tm(100*time.Second)) // its last run failed then, too
	b.archive(t, "a2", "job", event.ReasonExhausted, "x", tm(2*time.Minute))   // the end is not in

	got, err := b.store.Activity(b.ctx, from, time.Minute, 2)
	require.NoError(t, err)
	require.Equal(t, []eventstore.Bucket{
		{Start: from, Succeeded: 1},
		{Start: tm(time.Minute), Succeeded: 2, Failed: 3, Archived: 1},
	}, got)
	_, err = b.store.Activity(b.ctx, from, 0, 2)
	require.Error(t, err)
}
