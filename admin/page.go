package admin

import (
	"context"
	"time"

	"github.com/retrigger/retrigger/shared/eventstore"
)

// PageRequest asks for one page of events (In "events") or archived
// events ("errors"), newest first, for a web view: the filter is Query's
// (its IDs and Limit aside), Limit the page's size, After or Before the
// Older or Newer key of the page it continues from.
type PageRequest struct {
	In string `json:"in"`
	Query
	After  string `json:"after,omitempty"`
	Before string `json:"before,omitempty"`
}

// Page is one page of a list. Older and Newer are the keys of the pages
// around it ("": none). Partial: the search for Query.Error read as many
// documents as one page may (Examined) before the page was full; Older
// goes on from there.
type Page struct {
	Items    []Item `json:"items"`
	Older    string `json:"older,omitempty"`
	Newer    string `json:"newer,omitempty"`
	Examined int    `json:"examined"`
	Partial  bool   `json:"partial,omitempty"`
}

// Page reads one page by keyset on the collection's time and _id (see
// eventstore.Store.Page): on MongoDB an index serves every page at any
// depth.
func (a *Admin) Page(ctx context.Context, r PageRequest) (*Page, error) {
	w, err := where(r.In)
	if err != nil {
		return nil, err
	}
	r.IDs = nil
	f, err := r.filter()
	if err != nil {
		return nil, err
	}
	req := eventstore.PageRequest{Filter: f, Limit: r.Limit}
	for _, k := range []struct {
		text string
		dst  **eventstore.PageKey
	}{{r.After, &req.After}, {r.Before, &req.Before}} {
		if k.text == "" {
			continue
		}
		key, err := eventstore.ParsePageKey(k.text)
		if err != nil {
			return nil, invalid("%v", err)
		}
		*k.dst = &key
	}
	p, err := a.store.Page(ctx, w, req)
	if err != nil {
		return nil, err
	}
	out := &Page{Items: make([]Item, len(p.Docs)), Examined: p.Examined, Partial: p.Partial}
	for i, doc := range p.Docs {
		out.Items[i] = a.item(w, doc)
	}
	if p.Older != nil {
		out.Older = p.Older.String()
	}
	if p.Newer != nil {
		out.Newer = p.Newer.String()
	}
	return out, nil
}

// Activity is what happened per interval (Step) over a window ending now,
// oldest interval first (see eventstore.Bucket).
type Activity struct {
	From    time.Time           `json:"from"`
	Step    time.Duration       `json:"step"`
	Buckets []eventstore.Bucket `json:"buckets"`
}

// Activity counts successes, failures and archives per step over the
// window that ends with the current step: 60 minutes for (time.Hour,
// time.Minute).
func (a *Admin) Activity(ctx context.Context, window, step time.Duration) (*Activity, error) {
	if step <= 0 || window < step {
		return nil, invalid("activity over %s per %s", window, step)
	}
	n := int(window / step)
	from := a.now().Truncate(step).Add(step - time.Duration(n)*step)
	buckets, err := a.store.Activity(ctx, from, step, n)
	if err != nil {
		return nil, err
	}
	return &Activity{From: from, Step: step, Buckets: buckets}, nil
}
