package embedded_test

import (
	"testing"

	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
	"github.com/retrigger/retrigger/shared/store/storetest"
)

// TestProbes runs the query and update shape probes on the embedded engine
// (its engine layer on lungo's matcher), declaring where it deviates from
// MongoDB; docs/WIRE.md has the table for every backend.
func TestProbes(t *testing.T) {
	storetest.RunProbes(t, "embedded", func(t *testing.T) store.Database {
		return open(t, embedded.Options{})
	}, storetest.Deviations{
		// (lungo's own engine layer panicked updating a document whose
		// _id is binary, a document or an array; the engine compares
		// _ids with lungo's bsonkit.Compare, so UpsertByIDOfEveryType
		// holds.)
		"Type": {Why: "lungo's {$type: \"null\"} also matches a missing field"},
		// retrigger's bounds (eventstore.ChangeMatch) have one name and one
		// type, where both orders agree.
		"CompareDocuments": {Why: "lungo compares a field's name before its value's type: {k: 1} > {a: \"\"}, where MongoDB puts any number before any string"},
	})
}
