// Package eventstoretest is the conformance suite of the event store: the
// behaviours the pipeline relies on, such as "a transition on a stale
// version matches nothing" and "the sweep finds an event whose due time has
// passed and no other", checked on a storage backend. It runs on the
// embedded engine in the default test command and on a real MongoDB when
// RETRIGGER_TEST_MONGODB_URI is set, in the shape of River's
// riverdrivertest: a t.Run per behaviour, each on a fresh database.
package eventstoretest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/store"
)

// Features say what a backend lacks; the zero value lacks nothing.
type Features struct {
	// NoConcurrentAtomicity: conditional updates from concurrent clients
	// are not atomic (some MongoDB-compatible servers); the races are
	// skipped.
	NoConcurrentAtomicity bool
	// NumbersCompareByType: a filter's int32 2 does not match a stored
	// double 2.0 (some MongoDB-compatible servers; MongoDB compares numbers
	// by value). Documents retrigger writes itself are unaffected: it
	// writes and queries each field with one BSON type. Hand-typed
	// documents are skipped.
	NumbersCompareByType bool
	// PartialTypeOperator: $type rejects some type aliases an _id may
	// have (jongodb: binData, met in a document). The pages' tests, whose
	// boundaries between ids of different types rely on $type, are
	// skipped.
	PartialTypeOperator bool
	// NoChangeStreams: the backend has no change streams (a standalone
	// server, a MongoDB-wire server without them). The tests that watch
	// are skipped.
	NoChangeStreams bool
	// NoDocumentOrder: $gte and $lte with a document operand match
	// nothing (jongodb), where MongoDB compares documents field by field.
	// The change stream's $match tells a claim, a renewal and a park by
	// such a comparison; the fixtures that need it are not checked there.
	NoDocumentOrder bool
}

// typeOperator are the tests that rely on $type for every type an _id
// may have.
var typeOperator = map[string]bool{"PageOrder": true, "PageArchive": true}

// watching are the tests that open a change stream.
var watching = map[string]bool{"ChangeStreamDropsWhatTheRelayIgnores": true}

// Run runs the suite. open returns a fresh database that no other test
// uses, and closes (and for a server, drops) it when t ends.
func Run(t *testing.T, open func(t *testing.T) store.Database, f Features) {
	tests := []struct {
		name    string
		run     func(t *testing.T, b *bundle)
		race    bool
		numbers bool // relies on numbers comparing by value
	}{
		{"ClaimNewEvent", testClaimNew, false, false},
		{"ClaimIsExclusive", testClaimExclusive, true, false},
		{"ClaimFailedEventOnlyWhenDue", testClaimDue, false, false},
		{"ClaimFailedEventWithoutDueDate", testClaimNoDueDate, false, false},
		{"ClaimFindsNothingToRun", testClaimNothing, false, false},
		{"ClaimTakesOverAnExpiredLeaseAndCountsTheCrash", testClaimTakeover, false, false},
		{"TakeoverIsExclusive", testTakeoverExclusive, true, false},
		{"ClaimRetriedWithItsTokenCountsNothing", testClaimRetriedWithItsToken, false, false},
		{"TakeoverRetriedWithItsTokenCountsOneCrash", testTakeoverRetriedWithItsToken, false, false},
		{"AbandonKeepsTheCrashes", testAbandon, false, false},
		{"TakeoverAfterTheGrace", testTakeoverAfterGrace, false, false},
		{"RecordedFindsAnAppliedTransition", testRecorded, false, false},
		{"ClaimHandTypedNumbers", testClaimDoubles, false, true},
		{"ClaimWithDefaultType", testClaimDefaultType, false, false},
		{"CompleteWritesTheOutcome", testComplete, false, false},
		{"CompleteKeepsABoundedHistory", testCompleteHistory, false, false},
		{"TransitionOnAChangedEventMatchesNothing", testCompleteStale, false, false},
		{"RenewAndRelease", testRenewRelease, false, false},
		{"AnyIDType", testAnyID, false, false},
		{"MoveToErrors", testMoveToErrors, false, false},
		{"MoveToErrorsOfAChangedEventTakesTheCopyBack", testMoveChanged, false, false},
		{"RedrivenCopyArchivesAgain", testRearchive, false, false},
		{"DueAfterPagesInDueOrder", testDueAfter, false, false},
		{"DueAfterFindsAnEventThatMovedLater", testDueAfterMovedLater, false, false},
		{"SweepFindsStalledEventsAndNoOthers", testSweep, false, false},
		{"SweepPagesThroughMixedIDTypes", testSweepPaging, false, false},
		{"RetireDeletesOldSuccessesInBatches", testRetire, false, false},
		{"Checkpoints", testCheckpoints, false, false},
		{"LeadershipIsExclusiveAndFencesCheckpoints", testLeadership, false, false},
		{"IndexesTwice", testIndexes, false, false},
		{"ListAndCount", testListAndCount, false, false},
		{"CountByType", testCountByType, false, true},
		{"OldestDue", testOldestDue, false, false},
		{"Retry", testRetry, false, false},
		{"Cancel", testCancel, false, false},
		{"Redrive", testRedrive, false, false},
		{"Purge", testPurge, false, false},
		{"FindIDsOfAnyType", testFindIDs, false, false},
		{"PageOrder", testPageOrder, false, false},
		{"PageArchive", testPageArchive, false, false},
		{"PageExamineBound", testPageExamineBound, false, false},
		{"Activity", testActivity, false, false},
		{"FlowStateIsWrittenOverItsRevision", testFlowStateIsWrittenOverItsRevision, false, false},
		{"Slots", testSlots, false, false},
		{"ReapSlots", testReapSlots, false, false},
		{"SlotsAreExclusive", testSlotsAreExclusive, true, false},
		{"Rate", testRate, false, false},
		{"EarlierOfKey", testEarlierOfKey, false, false},
		{"ParkAndWake", testParkAndWake, false, false},
		{"ClaimDelayedFirstRun", testClaimDelayedFirstRun, false, false},
		{"ChangeStreamDropsWhatTheRelayIgnores", testChangeStreamDropsWhatTheRelayIgnores, false, false},
		{"ChangeMatchOnChangeEvents", testChangeMatchOnChangeEvents, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.race && f.NoConcurrentAtomicity {
				t.Skip("the backend's conditional updates are not atomic across clients (Features.NoConcurrentAtomicity)")
			}
			if tt.numbers && f.NumbersCompareByType {
				t.Skip("the backend compares numbers by their BSON type (Features.NumbersCompareByType)")
			}
			if watching[tt.name] && f.NoChangeStreams {
				t.Skip("the backend has no change streams (Features.NoChangeStreams)")
			}
			if typeOperator[tt.name] && f.PartialTypeOperator {
				t.Skip("the backend's $type rejects some types an _id may have (Features.PartialTypeOperator)")
			}
			t.Parallel()
			b := setup(t, open(t))
			b.features = f
			tt.run(t, b)
		})
	}
}

// bundle is what a subtest works on.
type bundle struct {
	ctx    context.Context
	db     store.Database
	store  *eventstore.Store
	events store.Collection
	errs   store.Collection
	now    time.Time
	token  int64
	// lastClaim is the last claim of each event (by its id's String), as
	// bundle.claimed took it.
	lastClaim map[string]eventstore.Claim
	features  Features
}

func setup(t *testing.T, db store.Database) *bundle {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	st := eventstore.New(db, eventstore.Options{History: 3})
	require.NoError(t, st.EnsureIndexes(ctx))
	return &bundle{
		ctx: ctx, db: db, store: st,
		events: db.Collection(eventstore.DefaultEvents),
		errs:   db.Collection(eventstore.DefaultErrors),
		now:    time.Now().UTC().Truncate(time.Millisecond),
	}
}

// insert inserts an event document and returns its id.
func (b *bundle) insert(t *testing.T, doc bson.D) bson.RawValue {
	t.Helper()
	raw, err := bson.Marshal(doc)
	require.NoError(t, err)
	require.NoError(t, b.events.InsertOne(b.ctx, bson.Raw(raw)))
	return bson.Raw(raw).Lookup("_id")
}

// job is an event of type "job" with the given id and fields.
func job(id any, fields ...bson.E) bson.D {
	return append(bson.D{{Key: "_id", Value: id}, {Key: "type", Value: "job"}}, fields...)
}

// claim claims an event of type "job" at b.now.
func (b *bundle) claim(t *testing.T, id bson.RawValue) eventstore.Claim {
	t.Helper()
	return b.claimAt(t, id, b.now, "r1")
}

func (b *bundle) claimAt(t *testing.T, id bson.RawValue, now time.Time, owner string) eventstore.Claim {
	t.Helper()
	b.token++
	c, err := b.store.ClaimEvent(b.ctx, eventstore.ClaimRequest{ID: id, Type: "job", Owner: owner, Token: b.token, Now: now, TTL: 30 * time.Second})
	require.NoError(t, err)
	return c
}

// get reads an event; nil when it is gone.
func (b *bundle) get(t *testing.T, coll store.Collection, id bson.RawValue) *event.Event {
	t.Helper()
	doc, err := coll.FindOne(b.ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		require.ErrorIs(t, err, store.ErrNotFound)
		return nil
	}
	ev, err := event.Parse(doc)
	require.NoError(t, err, "%s", doc)
	return &ev
}

func (b *bundle) raw(t *testing.T, coll store.Collection, id bson.RawValue) bson.Raw {
	t.Helper()
	doc, err := coll.FindOne(b.ctx, bson.D{{Key: "_id", Value: id}})
	require.NoError(t, err)
	return doc
}

func success(at time.Time) eventstore.Transition {
	return eventstore.Transition{To: event.StateSuccess, At: at, Run: event.Attempt{At: at, Outcome: "success", Number: 1, Replica: "r1"}}
}

func failure(at, next time.Time, attempts int64) eventstore.Transition {
	return eventstore.Transition{To: event.StateFailed, At: at, Attempts: attempts, NextAt: next,
		LastError: event.LastError{Message: "boom", Retryable: true, At: at},
		Run:       event.Attempt{At: at, Outcome: "failed", Error: "boom", Number: attempts, Replica: "r1"}}
}
