package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
)

// A Probe checks one query or update shape against MongoDB's documented
// semantics, through the storage port. Unlike the suite's tests, a probe
// reports what it saw instead of stopping at the first difference: run
// reports nil when the backend behaves as MongoDB documents, or an error
// saying how it differs. The probes are the shapes retrigger's domain code
// sends or is about to send (leases taken by conditional find-and-update,
// transitions pinned on version, state and lease token, sweeps sorted by
// nextAttemptAt over _ids of mixed BSON types, upserts into errors by
// _id), plus the operator semantics they rest on.
type Probe struct {
	Name string
	// MongoDB is the documented behaviour the probe expects.
	MongoDB string
	Run     func(ctx context.Context, db store.Database) error
}

// Deviations declares the probes a backend is known to fail, by probe name.
// RunProbes fails a probe that deviates without being declared, and a
// declared one that no longer deviates (unless it is intermittent).
type Deviations map[string]Deviation

// Deviation is a known difference from MongoDB.
type Deviation struct {
	Why string
	// Intermittent: a race that shows in most runs of the probe but not
	// in every one; a run where it does not show is logged, not failed.
	Intermittent bool
}

// ProbeResult is one row of the probe table.
type ProbeResult struct {
	Probe    string
	Deviates bool
	Detail   string // how it deviates
}

// RunProbes runs every probe in a subtest on a fresh database from open,
// checks the outcome against known, and logs the table (one line per
// probe: "PROBE <backend> <name> ok|DEVIATES <detail>", for docs/WIRE.md).
// extra are probes of the caller's own (as driver-level ones).
func RunProbes(t *testing.T, backend string, open func(t *testing.T) store.Database, known Deviations, extra ...Probe) []ProbeResult {
	all := append(Probes(), extra...)
	for name := range known {
		if !slices.ContainsFunc(all, func(p Probe) bool { return p.Name == name }) {
			t.Errorf("a deviation is declared for %q, which is no probe", name)
		}
	}
	results := make([]ProbeResult, len(all))
	for i, p := range all {
		t.Run(p.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*timeout)
			defer cancel()
			err := runProbe(ctx, p, open(t))
			results[i] = ProbeResult{Probe: p.Name, Deviates: err != nil}
			dev, declared := known[p.Name]
			switch {
			case err != nil:
				results[i].Detail = oneLine(err.Error())
				if !declared {
					t.Errorf("deviates from MongoDB (%s): %v", p.MongoDB, err)
					return
				}
				t.Logf("known deviation (%s): %v", dev.Why, err)
			case declared && dev.Intermittent:
				t.Logf("declared as an intermittent deviation (%s), and did not show in this run", dev.Why)
			case declared:
				t.Errorf("declared as a deviation (%s), but behaves as MongoDB documents: remove the declaration", dev.Why)
			}
		})
	}
	var b strings.Builder
	for _, r := range results {
		verdict := "ok"
		if r.Deviates {
			verdict = "DEVIATES"
		}
		fmt.Fprintf(&b, "PROBE %s %s %s %s\n", backend, r.Probe, verdict, r.Detail)
	}
	t.Logf("probe table of %s:\n%s", backend, b.String())
	return results
}

// runProbe runs p, turning a panic of the backend into a deviation.
func runProbe(ctx context.Context, p Probe, db store.Database) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the backend panicked: %v", r)
		}
	}()
	return p.Run(ctx, db)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Probes are the shared probes, in a stable order.
func Probes() []Probe {
	return []Probe{
		{"NumericEqualityAcrossTypes", "int32, int64 and double compare by value: {n: 2} matches 2, NumberLong(2) and 2.0 whatever the query's type", probeNumericEquality},
		{"DecimalEqualsOtherNumbers", "Decimal128 compares by value with the other numeric types", probeDecimalEquality},
		{"DecimalID", "a Decimal128 _id is stored, found, upserted, and sorts among the other numbers by value", probeDecimalID},
		{"InMixedNumericAndNull", "{state: {$in: [0, 2, null]}} matches 0 and 2 of any numeric type, null, and a missing state, whatever the type of the listed numbers", probeInMixedNumericAndNull},
		{"InWithNullMatchesMissing", "{state: {$in: [0, 2, null]}} (one numeric type throughout) matches 0, 2, null and a missing state", probeInWithNull},
		{"EqualsNullMatchesMissing", "{f: null} matches a null f and a missing f, not 0 or \"\"", probeEqualsNull},
		{"ExistsOnDottedPath", "{\"retrigger.lease\": {$exists: false}} matches documents without retrigger, with retrigger: {} or a scalar retrigger; $exists: true matches a lease, even a null one", probeExistsDotted},
		{"NotIn", "{state: {$not: {$in: [1, 3]}}} matches every other value, null and missing", probeNot},
		{"NinAndNeMatchMissing", "$nin and $ne match documents where the field is missing or null", probeNinNe},
		{"Type", "$type \"int\", \"long\", \"double\", \"number\" and \"null\" select by stored BSON type; a missing field is not null", probeType},
		{"LeaseFindOneAndUpdate", "find-and-update on {_id, state: {$in: [0, 2, null]}, \"retrigger.lease\": {$exists: false}} with $set of \"retrigger.lease\" creates the subdocument and returns the document after the update; repeating it matches nothing", probeLeaseFindOneAndUpdate},
		{"SetDottedKeepsSiblings", "$set of \"retrigger.lease.token\" adds to an existing subdocument and keeps its other fields", probeSetDottedKeepsSiblings},
		{"PinnedTransitionSetUnset", "an update pinned on {_id, version, state, \"retrigger.lease.token\"} with $set and $unset of a dotted path matches once, removes only that path, and matches nothing when repeated", probePinnedTransition},
		{"UnsetLeavesEmptyParent", "$unset of the only field of a subdocument leaves the parent as an empty document", probeUnsetLeavesEmptyParent},
		{"UnsetMissingPathIsNoOp", "$unset of a path that does not exist still matches and creates nothing", probeUnsetMissing},
		{"IncKeepsIntegerWidth", "$inc: int32 + int32 stays int32, int32 + int64 becomes int64, a missing field takes the increment's type, int32 + double becomes double", probeIncWidth},
		{"SetOnInsert", "an upsert that inserts applies $setOnInsert, $set and the filter's equalities; one that updates ignores $setOnInsert", probeSetOnInsert},
		{"UpsertFilterWithIn", "an upsert whose filter has {_id, state: {$in: [...]}} inserts a document with the _id and no state", probeUpsertWithIn},
		{"UpsertFailedConditionIsDuplicate", "an upsert on {_id: X, version: 3} when X exists with another version tries to insert X and fails with a duplicate key error", probeUpsertConditionDuplicate},
		{"UpsertByIDOfEveryType", "upserts by _id of every BSON type retrigger may meet (ObjectID, string, int32, int64, double, UUID, document; Decimal128 in DecimalID) each insert once, then match, and the _id reads back unchanged", probeUpsertEveryIDType},
		{"IDNumericEquality", "_id 7 (int32) is found by NumberLong(7), 7.0 and Decimal128 7, $nin excludes numeric _ids by value, and a second insert of NumberLong(7) is a duplicate key", probeIDNumericEquality},
		{"NinOnMixedIDs", "{_id: {$nin: [...]}} with _ids of mixed BSON types excludes exactly those, numbers by value", probeNinMixedIDs},
		{"RangeOnIDIsTypeBracketed", "$gte/$lte on _id compare within a type bracket: {_id: {$gte: 0}} matches only numeric _ids, {$gte: \"\"} only strings, {$gte: ObjectId(0…0)} only ObjectIDs", probeRangeBracketed},
		{"SortMixedIDs", "a sort on _id of mixed types follows BSON order: numbers (by value, across types) < strings < documents < binary < ObjectID", probeSortMixedIDs},
		{"SweepShape", "{state: 2, nextAttemptAt: {$gte: t0, $lte: now}, _id: {$nin: [...]}} sorted by {nextAttemptAt: 1, _id: 1} with a limit returns the due, unseen events in order; a missing, string or numeric nextAttemptAt never compares with a date", probeSweep},
		{"CompareDocuments", "$gte/$lte with a document operand match documents only, compared field by field: each field's value type, then its name, then its value, and a document that runs out of fields first is less; so {u: {$gte: {k: lo}, $lte: {k: hi}}} matches the documents whose first field is named k, with a value of lo's type between lo and hi, whatever fields follow; a name may hold dots", probeCompareDocuments},
		{"DottedFieldNames", "a field whose name holds dots is stored and read back as it is, and an equality with a whole document compares it by name; a dotted query path walks into subdocuments and never reaches it", probeDottedFieldNames},
		{"SortMissingAndNullFirst", "an ascending sort puts missing and null before numbers and dates", probeSortNullFirst},
		{"DeletePinnedOnVersionAndState", "a delete pinned on {_id, version: 5, state: 3} deletes the document once, and nothing on another version", probeDeletePinned},
		{"EnsureSeveralIndexesTwice", "createIndexes repeated with the same two indexes is a no-op", probeIndexesTwice},
		{"ConcurrentFindOneAndUpdate", "of 8 concurrent find-and-updates pinned on the same version, exactly one wins, in every one of 50 rounds", probeConcurrentFindOneAndUpdate},
		{"ConcurrentUpdateOne", "of 8 concurrent updates pinned on {_id, version, state}, exactly one matches, in every one of 50 rounds", probeConcurrentUpdateOne},
		{"ConcurrentLease", "of 8 concurrent lease takers ({\"retrigger.lease\": {$exists: false}} + $set), exactly one gets the lease, in every one of 50 rounds", probeConcurrentLease},
		{"ConcurrentPinnedDelete", "of 8 concurrent deletes pinned on {_id, version, state: 3}, exactly one deletes, in every one of 50 rounds", probeConcurrentDelete},
		{"ConcurrentUpsertByID", "8 concurrent upserts of the same _id leave one document and no error (the server retries an upsert that lost the race on _id)", probeConcurrentUpsert},
	}
}

// Helpers. Probes use string _ids unless they probe _id types, and compare
// sets of _ids. The probes of shapes store and query numbers as int32
// throughout; mixing numeric types is what the Numeric, Decimal and
// IDNumericEquality probes are about, so that one deviation does not mask
// the others.

func d(kv ...any) bson.D {
	out := make(bson.D, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, bson.E{Key: kv[i].(string), Value: kv[i+1]})
	}
	return out
}

func ext(v any) string {
	b, err := bson.MarshalExtJSON(v, false, false)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}

func seed(ctx context.Context, coll store.Collection, docs ...bson.D) error {
	for _, doc := range docs {
		if err := coll.InsertOne(ctx, doc); err != nil {
			return fmt.Errorf("seeding %s: %w", ext(doc), err)
		}
	}
	return nil
}

// label is the string _id, or the "label" field when the _id is not a string.
func label(doc bson.Raw) string {
	if l, ok := doc.Lookup("label").StringValueOK(); ok {
		return l
	}
	if s, ok := doc.Lookup("_id").StringValueOK(); ok {
		return s
	}
	return doc.Lookup("_id").String()
}

func labels(docs []bson.Raw) []string {
	out := make([]string, len(docs))
	for i, doc := range docs {
		out[i] = label(doc)
	}
	return out
}

// matches checks that filter matches exactly want (in any order).
func matches(ctx context.Context, coll store.Collection, filter bson.D, want ...string) error {
	docs, err := coll.Find(ctx, filter, store.FindOptions{})
	if err != nil {
		return fmt.Errorf("%s: %w", ext(filter), err)
	}
	got := labels(docs)
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("%s matched %v, MongoDB matches %v", ext(filter), got, want)
	}
	return nil
}

// ordered checks that Find returns exactly want, in order.
func ordered(ctx context.Context, coll store.Collection, filter bson.D, opts store.FindOptions, want ...string) error {
	docs, err := coll.Find(ctx, filter, opts)
	if err != nil {
		return fmt.Errorf("%s sort %s: %w", ext(filter), ext(opts.Sort), err)
	}
	if got := labels(docs); !slices.Equal(got, want) {
		return fmt.Errorf("%s sort %s limit %d returned %v, MongoDB returns %v", ext(filter), ext(opts.Sort), opts.Limit, got, want)
	}
	return nil
}

// typeOf returns the BSON type name at path in doc ("missing" if absent).
func typeOf(doc bson.Raw, path ...string) string {
	v, err := doc.LookupErr(path...)
	if err != nil {
		return "missing"
	}
	return v.Type.String()
}

func findID(ctx context.Context, coll store.Collection, id any) (bson.Raw, error) {
	doc, err := coll.FindOne(ctx, d("_id", id))
	if err != nil {
		return nil, fmt.Errorf("reading %s back: %w", ext(d("_id", id)), err)
	}
	return doc, nil
}

func dec(s string) bson.Decimal128 {
	v, err := bson.ParseDecimal128(s)
	if err != nil {
		panic(err)
	}
	return v
}

// The probes.

func probeNumericEquality(ctx context.Context, db store.Database) error {
	coll := db.Collection("things")
	if err := seed(ctx, coll,
		d("_id", "i32", "n", int32(2)), d("_id", "i64", "n", int64(2)), d("_id", "dbl", "n", 2.0),
		d("_id", "str", "n", "2"), d("_id", "other", "n", int32(3))); err != nil {
		return err
	}
	var errs []error
	for _, q := range []any{int32(2), int64(2), 2.0} {
		errs = append(errs, matches(ctx, coll, d("n", q), "i32", "i64", "dbl"))
	}
	return errors.Join(errs...)
}

func probeDecimalEquality(ctx context.Context, db store.Database) error {
	coll := db.Collection("things")
	if err := seed(ctx, coll,
		d("_id", "i32", "n", int32(2)), d("_id", "i64", "n", int64(2)), d("_id", "dbl", "n", 2.0),
		d("_id", "dec", "n", dec("2")), d("_id", "dec25", "n", dec("2.5"))); err != nil {
		return err
	}
	return errors.Join(
		matches(ctx, coll, d("n", dec("2")), "i32", "i64", "dbl", "dec"),
		matches(ctx, coll, d("n", int64(2)), "i32", "i64", "dbl", "dec"),
		matches(ctx, coll, d("n", 2.5), "dec25"),
	)
}

func probeInMixedNumericAndNull(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if err := seed(ctx, coll,
		d("_id", "new32", "state", int32(0)), d("_id", "new64", "state", int64(0)),
		d("_id", "failed32", "state", int32(2)), d("_id", "failed64", "state", int64(2)), d("_id", "failedDbl", "state", 2.0),
		d("_id", "missing"), d("_id", "null", "state", nil),
		d("_id", "success", "state", int32(1)), d("_id", "error", "state", int32(3)), d("_id", "string", "state", "0")); err != nil {
		return err
	}
	want := []string{"new32", "new64", "failed32", "failed64", "failedDbl", "missing", "null"}
	var errs []error
	for _, in := range []bson.A{
		{int64(0), int64(2), nil},
		{int32(0), int32(2), nil},
		{0.0, 2.0, nil},
		{nil, int32(2), int64(0)},
	} {
		errs = append(errs, matches(ctx, coll, d("state", d("$in", in)), want...))
	}
	errs = append(errs, matches(ctx, coll, d("state", d("$in", bson.A{int32(0), nil})), "new32", "new64", "missing", "null"))
	return errors.Join(errs...)
}

func probeInWithNull(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if err := seed(ctx, coll,
		d("_id", "new", "state", int32(0)), d("_id", "failed", "state", int32(2)),
		d("_id", "missing"), d("_id", "null", "state", nil),
		d("_id", "success", "state", int32(1)), d("_id", "error", "state", int32(3))); err != nil {
		return err
	}
	return errors.Join(
		matches(ctx, coll, d("state", d("$in", bson.A{int32(0), int32(2), nil})), "new", "failed", "missing", "null"),
		matches(ctx, coll, d("state", d("$in", bson.A{nil})), "missing", "null"),
	)
}

func probeDecimalID(ctx context.Context, db store.Database) error {
	coll := db.Collection("errors")
	if err := seed(ctx, coll, d("_id", int32(11), "label", "eleven"), d("_id", 20.5, "label", "twenty")); err != nil {
		return err
	}
	var errs []error
	if err := seed(ctx, coll, d("_id", dec("14.5"), "label", "decimal")); err != nil {
		return err
	}
	if _, err := findID(ctx, coll, dec("14.5")); err != nil {
		errs = append(errs, err)
	}
	if n, err := coll.UpdateOne(ctx, d("_id", dec("15.5")), d("$setOnInsert", d("label", "upserted")), true); err != nil || n != 0 {
		errs = append(errs, fmt.Errorf("upsert by a Decimal128 _id: matched %d, %v; want an insert", n, err))
	}
	errs = append(errs, ordered(ctx, coll, d(), store.FindOptions{Sort: d("_id", int32(1))}, "eleven", "decimal", "upserted", "twenty"))
	return errors.Join(errs...)
}

func probeEqualsNull(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if err := seed(ctx, coll,
		d("_id", "missing"), d("_id", "null", "maxAttempts", nil),
		d("_id", "zero", "maxAttempts", int32(0)), d("_id", "empty", "maxAttempts", "")); err != nil {
		return err
	}
	return matches(ctx, coll, d("maxAttempts", nil), "missing", "null")
}

func probeExistsDotted(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if err := seed(ctx, coll,
		d("_id", "none"),
		d("_id", "empty", "retrigger", d()),
		d("_id", "scalar", "retrigger", int32(5)),
		d("_id", "other", "retrigger", d("owner", "x")),
		d("_id", "lease", "retrigger", d("lease", d("token", int64(1)))),
		d("_id", "nullLease", "retrigger", d("lease", nil))); err != nil {
		return err
	}
	return errors.Join(
		matches(ctx, coll, d("retrigger.lease", d("$exists", false)), "none", "empty", "scalar", "other"),
		matches(ctx, coll, d("retrigger.lease", d("$exists", true)), "lease", "nullLease"),
		matches(ctx, coll, d("retrigger.lease.token", d("$exists", true)), "lease"),
	)
}

func stateDocs() []bson.D {
	return []bson.D{
		d("_id", "s0", "state", int32(0)), d("_id", "s1", "state", int32(1)),
		d("_id", "s2", "state", int32(2)), d("_id", "s3", "state", int32(3)),
		d("_id", "missing"), d("_id", "null", "state", nil),
	}
}

func probeNot(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if err := seed(ctx, coll, stateDocs()...); err != nil {
		return err
	}
	return matches(ctx, coll, d("state", d("$not", d("$in", bson.A{int32(1), int32(3)}))), "s0", "s2", "missing", "null")
}

func probeNinNe(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if err := seed(ctx, coll, stateDocs()...); err != nil {
		return err
	}
	return errors.Join(
		matches(ctx, coll, d("state", d("$nin", bson.A{int32(1), int32(3)})), "s0", "s2", "missing", "null"),
		matches(ctx, coll, d("state", d("$ne", int32(1))), "s0", "s2", "s3", "missing", "null"),
	)
}

func probeType(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if err := seed(ctx, coll,
		d("_id", "i32", "state", int32(1)), d("_id", "i64", "state", int64(1)), d("_id", "dbl", "state", 1.0),
		d("_id", "str", "state", "1"), d("_id", "null", "state", nil), d("_id", "missing")); err != nil {
		return err
	}
	return errors.Join(
		matches(ctx, coll, d("state", d("$type", "int")), "i32"),
		matches(ctx, coll, d("state", d("$type", "long")), "i64"),
		matches(ctx, coll, d("state", d("$type", "double")), "dbl"),
		matches(ctx, coll, d("state", d("$type", "number")), "i32", "i64", "dbl"),
		matches(ctx, coll, d("state", d("$type", "null")), "null"),
		matches(ctx, coll, d("state", d("$type", int32(16))), "i32"),
	)
}

// leaseFilter is the shape of taking a lease on an event that may run.
func leaseFilter(id string) bson.D {
	return d("_id", id,
		"state", d("$in", bson.A{int32(0), int32(2), nil}),
		"retrigger.lease", d("$exists", false))
}

func probeLeaseFindOneAndUpdate(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	until := bson.NewDateTimeFromTime(time.Now().Add(time.Minute).Truncate(time.Millisecond))
	if err := seed(ctx, coll,
		d("_id", "failed", "type", "email", "state", int32(2), "version", int32(3)),
		d("_id", "bare", "type", "email"),
		d("_id", "leased", "state", int32(0), "retrigger", d("lease", d("token", int64(1)))),
		d("_id", "done", "state", int32(1))); err != nil {
		return err
	}
	update := d("$set", d("retrigger.lease", d("token", int64(7), "until", until)))
	var errs []error
	for _, id := range []string{"failed", "bare"} {
		doc, err := coll.FindOneAndUpdate(ctx, leaseFilter(id), update)
		if err != nil {
			errs = append(errs, fmt.Errorf("taking the lease of %s: %w", id, err))
			continue
		}
		if tok, ok := doc.Lookup("retrigger", "lease", "token").Int64OK(); !ok || tok != 7 {
			errs = append(errs, fmt.Errorf("%s: the returned document has retrigger.lease.token %s, want NumberLong(7) (the document after the update): %s",
				id, doc.Lookup("retrigger", "lease", "token"), doc))
		}
		if got := doc.Lookup("retrigger", "lease", "until"); got.Type != bson.TypeDateTime || got.DateTime() != int64(until) {
			errs = append(errs, fmt.Errorf("%s: retrigger.lease.until is %s, want the date written", id, got))
		}
		if id == "failed" && (typeOf(doc, "state") != bson.TypeInt32.String() || doc.Lookup("state").Int32() != 2) {
			errs = append(errs, fmt.Errorf("%s: state changed to %s", id, doc.Lookup("state")))
		}
		if _, err := coll.FindOneAndUpdate(ctx, leaseFilter(id), update); !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, fmt.Errorf("%s: taking a held lease again returned %v, want no match", id, err))
		}
	}
	for _, id := range []string{"leased", "done"} {
		if _, err := coll.FindOneAndUpdate(ctx, leaseFilter(id), update); !errors.Is(err, store.ErrNotFound) {
			errs = append(errs, fmt.Errorf("%s: the lease filter matched (%v), want no match", id, err))
		}
	}
	return errors.Join(errs...)
}

func probeSetDottedKeepsSiblings(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if err := seed(ctx, coll, d("_id", "e", "retrigger", d("owner", "a"))); err != nil {
		return err
	}
	doc, err := coll.FindOneAndUpdate(ctx, d("_id", "e"), d("$set", d("retrigger.lease.token", int64(1))))
	if err != nil {
		return err
	}
	want, _ := bson.Marshal(d("_id", "e", "retrigger", d("owner", "a", "lease", d("token", int64(1)))))
	if !bytes.Equal(want, doc) {
		return fmt.Errorf("after $set of retrigger.lease.token: %s, MongoDB: %s", doc, bson.Raw(want))
	}
	return nil
}

func probePinnedTransition(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if err := seed(ctx, coll, d("_id", "e", "type", "email", "state", int32(2), "version", int32(3),
		"retrigger", d("lease", d("token", int64(7), "until", bson.NewDateTimeFromTime(time.Now())), "keep", int32(1)))); err != nil {
		return err
	}
	filter := func(token any) bson.D {
		return d("_id", "e", "version", int32(3), "state", int32(2), "retrigger.lease.token", token)
	}
	update := d(
		"$set", d("state", int32(1), "version", int32(4), "retrigger.doneBy", "w1"),
		"$unset", d("retrigger.lease", ""),
	)
	var errs []error
	if n, err := coll.UpdateOne(ctx, filter(int64(8)), update, false); err != nil || n != 0 {
		errs = append(errs, fmt.Errorf("another lease token: matched %d, %v; want 0", n, err))
	}
	n, err := coll.UpdateOne(ctx, filter(int64(7)), update, false)
	if err != nil || n != 1 {
		return errors.Join(append(errs, fmt.Errorf("the pinned transition matched %d, %v; want 1", n, err))...)
	}
	doc, err := findID(ctx, coll, "e")
	if err != nil {
		return err
	}
	want, _ := bson.Marshal(d("_id", "e", "type", "email", "state", int32(1), "version", int32(4),
		"retrigger", d("keep", int32(1), "doneBy", "w1")))
	if !bytes.Equal(want, doc) {
		errs = append(errs, fmt.Errorf("after the transition: %s, MongoDB: %s", doc, bson.Raw(want)))
	}
	if n, err := coll.UpdateOne(ctx, filter(int64(7)), update, false); err != nil || n != 0 {
		errs = append(errs, fmt.Errorf("the same transition again: matched %d, %v; want 0", n, err))
	}
	return errors.Join(errs...)
}

func probeUnsetLeavesEmptyParent(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if err := seed(ctx, coll, d("_id", "e", "retrigger", d("lease", d("token", int64(7))), "state", int32(0))); err != nil {
		return err
	}
	doc, err := coll.FindOneAndUpdate(ctx, d("_id", "e"), d("$unset", d("retrigger.lease", "")))
	if err != nil {
		return err
	}
	want, _ := bson.Marshal(d("_id", "e", "retrigger", d(), "state", int32(0)))
	if !bytes.Equal(want, doc) {
		return fmt.Errorf("after $unset of retrigger.lease: %s, MongoDB: %s", doc, bson.Raw(want))
	}
	return nil
}

func probeUnsetMissing(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if err := seed(ctx, coll, d("_id", "e", "state", int32(0))); err != nil {
		return err
	}
	n, err := coll.UpdateOne(ctx, d("_id", "e"), d("$unset", d("retrigger.lease", "", "lastError", "")), false)
	if err != nil || n != 1 {
		return fmt.Errorf("$unset of missing paths matched %d, %v; want 1", n, err)
	}
	doc, err := findID(ctx, coll, "e")
	if err != nil {
		return err
	}
	want, _ := bson.Marshal(d("_id", "e", "state", int32(0)))
	if !bytes.Equal(want, doc) {
		return fmt.Errorf("after $unset of missing paths: %s, MongoDB: %s", doc, bson.Raw(want))
	}
	return nil
}

func probeIncWidth(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if err := seed(ctx, coll, d("_id", "e", "a", int32(1), "b", int32(1), "d", int32(1))); err != nil {
		return err
	}
	doc, err := coll.FindOneAndUpdate(ctx, d("_id", "e"),
		d("$inc", d("a", int32(1), "b", int64(1), "c", int64(1), "d", 0.5)))
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range []struct{ field, want string }{
		{"a", bson.TypeInt32.String()}, {"b", bson.TypeInt64.String()},
		{"c", bson.TypeInt64.String()}, {"d", bson.TypeDouble.String()},
	} {
		if got := typeOf(doc, c.field); got != c.want {
			errs = append(errs, fmt.Errorf("%s is %s after $inc, MongoDB: %s", c.field, got, c.want))
		}
	}
	return errors.Join(errs...)
}

func probeSetOnInsert(ctx context.Context, db store.Database) error {
	coll := db.Collection("errors")
	filter := d("_id", "u", "type", "email")
	n, err := coll.UpdateOne(ctx, filter, d("$set", d("a", int32(1)), "$setOnInsert", d("created", "first")), true)
	if err != nil || n != 0 {
		return fmt.Errorf("the inserting upsert: matched %d, %v; want 0 and no error", n, err)
	}
	doc, err := findID(ctx, coll, "u")
	if err != nil {
		return err
	}
	var errs []error
	want, _ := bson.Marshal(d("_id", "u", "type", "email", "a", int32(1), "created", "first"))
	if !bytes.Equal(want, doc) {
		errs = append(errs, fmt.Errorf("after the inserting upsert: %s, MongoDB: %s", doc, bson.Raw(want)))
	}
	n, err = coll.UpdateOne(ctx, filter, d("$set", d("a", int32(2)), "$setOnInsert", d("created", "second")), true)
	if err != nil || n != 1 {
		return errors.Join(append(errs, fmt.Errorf("the updating upsert: matched %d, %v; want 1", n, err))...)
	}
	doc, err = findID(ctx, coll, "u")
	if err != nil {
		return err
	}
	want, _ = bson.Marshal(d("_id", "u", "type", "email", "a", int32(2), "created", "first"))
	if !bytes.Equal(want, doc) {
		errs = append(errs, fmt.Errorf("after the updating upsert: %s, MongoDB: %s", doc, bson.Raw(want)))
	}
	return errors.Join(errs...)
}

func probeUpsertWithIn(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	n, err := coll.UpdateOne(ctx, d("_id", "u", "state", d("$in", bson.A{int32(0), int32(2)})), d("$set", d("x", int32(1))), true)
	if err != nil || n != 0 {
		return fmt.Errorf("upsert: matched %d, %v; want an insert", n, err)
	}
	doc, err := findID(ctx, coll, "u")
	if err != nil {
		return err
	}
	want, _ := bson.Marshal(d("_id", "u", "x", int32(1)))
	if !bytes.Equal(want, doc) {
		return fmt.Errorf("inserted %s, MongoDB: %s", doc, bson.Raw(want))
	}
	return nil
}

func probeUpsertConditionDuplicate(ctx context.Context, db store.Database) error {
	coll := db.Collection("errors")
	if err := seed(ctx, coll, d("_id", "x", "version", int32(4))); err != nil {
		return err
	}
	_, err := coll.UpdateOne(ctx, d("_id", "x", "version", int32(3)), d("$set", d("a", int32(1))), true)
	if !errors.Is(err, store.ErrDuplicate) {
		return fmt.Errorf("got %v, MongoDB: a duplicate key error", err)
	}
	return nil
}

// typedIDs are _ids of every BSON type retrigger may meet, with a label.
func typedIDs(salt int32) []struct {
	label string
	id    any
} {
	oid := bson.NewObjectID()
	uuid := bson.Binary{Subtype: bson.TypeBinaryUUID, Data: []byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, byte(salt)}}
	return []struct {
		label string
		id    any
	}{
		{"oid", oid},
		{"string", fmt.Sprintf("s%d", salt)},
		{"int32", salt*10 + 1},
		{"int64", int64(salt*10) + 2},
		{"double", float64(salt*10) + 3.5},
		{"uuid", uuid},
		{"document", d("tenant", "t", "n", salt)},
	}
}

func probeUpsertEveryIDType(ctx context.Context, db store.Database) error {
	coll := db.Collection("errors")
	ids := typedIDs(1)
	var errs []error
	for round, wantMatched := range []int64{0, 1} {
		for _, id := range ids {
			n, err := coll.UpdateOne(ctx, d("_id", id.id), d("$setOnInsert", d("label", id.label), "$set", d("round", int32(round))), true)
			if err != nil || n != wantMatched {
				errs = append(errs, fmt.Errorf("upsert %d of the %s _id %s: matched %d, %v; want %d", round+1, id.label, ext(d("_id", id.id)), n, err, wantMatched))
			}
		}
	}
	if n, err := coll.Count(ctx, nil); err != nil || n != int64(len(ids)) {
		errs = append(errs, fmt.Errorf("count after two upserts of each _id: %d, %v; want %d", n, err, len(ids)))
	}
	for _, id := range ids {
		doc, err := findID(ctx, coll, id.id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		want, _ := bson.Marshal(d("_id", id.id))
		if got := doc.Lookup("_id"); !got.Equal(bson.Raw(want).Lookup("_id")) || label(doc) != id.label {
			errs = append(errs, fmt.Errorf("the %s _id reads back as %s (%s)", id.label, got, label(doc)))
		}
	}
	return errors.Join(errs...)
}

func probeIDNumericEquality(ctx context.Context, db store.Database) error {
	coll := db.Collection("errors")
	if err := seed(ctx, coll, d("_id", int32(7), "label", "seven")); err != nil {
		return err
	}
	var errs []error
	for _, q := range []any{int64(7), 7.0} {
		if _, err := coll.FindOne(ctx, d("_id", q)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ext(d("_id", q)), err))
		}
	}
	if err := seed(ctx, coll, d("_id", int64(8), "label", "eight"), d("_id", 9.0, "label", "nine")); err != nil {
		return err
	}
	errs = append(errs, matches(ctx, coll, d("_id", d("$nin", bson.A{int64(7), 8.0, int32(9)}))))
	if err := coll.InsertOne(ctx, d("_id", int64(7))); !errors.Is(err, store.ErrDuplicate) {
		errs = append(errs, fmt.Errorf("inserting _id NumberLong(7) next to 7: %v, MongoDB: a duplicate key error", err))
	}
	// last: a server without Decimal128 may drop the connection, and the
	// driver retries a read that met a closed connection until the
	// context ends
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := coll.FindOne(short, d("_id", dec("7"))); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", ext(d("_id", dec("7"))), err))
	}
	return errors.Join(errs...)
}

func seedTypedIDs(ctx context.Context, coll store.Collection, salt int32, prefix string) ([]any, error) {
	var ids []any
	for _, id := range typedIDs(salt) {
		ids = append(ids, id.id)
		if err := seed(ctx, coll, d("_id", id.id, "label", prefix+id.label)); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func probeNinMixedIDs(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	seen, err := seedTypedIDs(ctx, coll, 1, "seen-")
	if err != nil {
		return err
	}
	if _, err := seedTypedIDs(ctx, coll, 2, "new-"); err != nil {
		return err
	}
	var want []string
	for _, id := range typedIDs(2) {
		want = append(want, "new-"+id.label)
	}
	return matches(ctx, coll, d("_id", d("$nin", bson.A(seen))), want...)
}

func probeRangeBracketed(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if _, err := seedTypedIDs(ctx, coll, 1, ""); err != nil {
		return err
	}
	return errors.Join(
		matches(ctx, coll, d("_id", d("$gte", int32(0))), "int32", "int64", "double"),
		matches(ctx, coll, d("_id", d("$gte", int64(12), "$lte", 14.5)), "int64", "double"),
		matches(ctx, coll, d("_id", d("$gte", "")), "string"),
		matches(ctx, coll, d("_id", d("$gte", bson.ObjectID{})), "oid"),
		matches(ctx, coll, d("_id", d("$lt", bson.ObjectID{}))),
	)
}

func probeSortMixedIDs(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if _, err := seedTypedIDs(ctx, coll, 1, ""); err != nil {
		return err
	}
	// 11 (int32) < 12 (int64) < 13.5 < "s1" < {…} < UUID < ObjectID
	want := []string{"int32", "int64", "double", "string", "document", "uuid", "oid"}
	return errors.Join(
		ordered(ctx, coll, d(), store.FindOptions{Sort: d("_id", int32(1))}, want...),
		ordered(ctx, coll, d(), store.FindOptions{Sort: d("_id", int32(-1)), Limit: 3}, "oid", "uuid", "document"),
	)
}

func probeSweep(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	now := time.Now().Truncate(time.Millisecond)
	at := func(d time.Duration) bson.DateTime { return bson.NewDateTimeFromTime(now.Add(d)) }
	t0 := now.Add(-time.Hour)
	if err := seed(ctx, coll,
		d("_id", "due1", "state", int32(2), "nextAttemptAt", at(-30*time.Minute)),
		d("_id", "due2", "state", int32(2), "nextAttemptAt", at(-20*time.Minute)),
		d("_id", "due3", "state", int32(2), "nextAttemptAt", at(-20*time.Minute)),
		d("_id", "due4", "state", int32(2), "nextAttemptAt", at(-time.Minute)),
		d("_id", "seen", "state", int32(2), "nextAttemptAt", at(-10*time.Minute)),
		d("_id", "old", "state", int32(2), "nextAttemptAt", at(-2*time.Hour)),
		d("_id", "future", "state", int32(2), "nextAttemptAt", at(time.Minute)),
		d("_id", "done", "state", int32(1), "nextAttemptAt", at(-time.Minute)),
		d("_id", "noDate", "state", int32(2)),
		d("_id", "nullDate", "state", int32(2), "nextAttemptAt", nil),
		d("_id", "stringDate", "state", int32(2), "nextAttemptAt", now.Add(-time.Minute).Format(time.RFC3339)),
		d("_id", "numberDate", "state", int32(2), "nextAttemptAt", now.Add(-time.Minute).UnixMilli()),
	); err != nil {
		return err
	}
	filter := d("state", int32(2),
		"nextAttemptAt", d("$gte", t0, "$lte", now),
		"_id", d("$nin", bson.A{"seen", int32(5), bson.NewObjectID()}))
	sort := d("nextAttemptAt", int32(1), "_id", int32(1))
	return errors.Join(
		ordered(ctx, coll, filter, store.FindOptions{Sort: sort}, "due1", "due2", "due3", "due4"),
		ordered(ctx, coll, filter, store.FindOptions{Sort: sort, Limit: 2}, "due1", "due2"),
		matches(ctx, coll, d("nextAttemptAt", d("$lte", now)), "due1", "due2", "due3", "due4", "seen", "old", "done"),
	)
}

func probeCompareDocuments(ctx context.Context, db store.Database) error {
	coll := db.Collection("things")
	at := bson.DateTime(5)
	if err := seed(ctx, coll,
		d("_id", "date", "u", d("k", at)),
		d("_id", "dateMore", "u", d("k", at, "z", int32(1))),
		d("_id", "dotted", "u", d("k.x", at)),
		d("_id", "num", "u", d("k", int32(1))),
		d("_id", "before", "u", d("j", at)),
		d("_id", "after", "u", d("m", at)),
		d("_id", "obj", "u", d("k", d("o", "x", "t", int64(7)))),
		d("_id", "objEmpty", "u", d("k", d())),
		d("_id", "objDate", "u", d("k", d("x", at))),
		d("_id", "empty", "u", d()),
		d("_id", "scalar", "u", "k"),
	); err != nil {
		return err
	}
	anyDate := func(k string) bson.D {
		return d("u", d("$gte", d(k, bson.DateTime(math.MinInt64)), "$lte", d(k, bson.DateTime(math.MaxInt64))))
	}
	return errors.Join(
		matches(ctx, coll, anyDate("k"), "date", "dateMore"),
		matches(ctx, coll, anyDate("k.x"), "dotted"),
		matches(ctx, coll, d("u", d("$gte", d("k", math.Inf(-1)), "$lte", d("k", math.Inf(1)))), "num"),
		matches(ctx, coll, d("u", d("$gte", d("k", d()), "$lte", d("k", d("\U0010FFFF", bson.Regex{Pattern: "$^"})))), "obj", "objEmpty", "objDate"),
		// the type before the name: a number is less than any string,
		// whatever its name
		matches(ctx, coll, d("u", d("$lt", d("a", ""))), "num", "empty"),
		// the name before the value ("k.x" follows "k"); documents (a type
		// below dates) are less
		matches(ctx, coll, d("u", d("$gt", d("k", bson.DateTime(math.MaxInt64)))), "after", "dotted"),
	)
}

func probeDottedFieldNames(ctx context.Context, db store.Database) error {
	coll := db.Collection("things")
	at := bson.DateTime(5)
	if err := seed(ctx, coll,
		d("_id", "dotted", "u", d("k.x", at)),
		d("_id", "nested", "u", d("k", d("x", at))),
	); err != nil {
		return err
	}
	doc, err := findID(ctx, coll, "dotted")
	if err != nil {
		return err
	}
	var errs []error
	if _, err := doc.LookupErr("u", "k.x"); err != nil {
		errs = append(errs, fmt.Errorf("the field \"k.x\" reads back as %s", doc.Lookup("u")))
	}
	return errors.Join(append(errs,
		matches(ctx, coll, d("u", d("k.x", at)), "dotted"),
		matches(ctx, coll, d("u", d("k", d("x", at))), "nested"),
		matches(ctx, coll, d("u.k.x", at), "nested"),
		matches(ctx, coll, d("u.k.x", d("$exists", true)), "nested"),
	)...)
}

func probeSortNullFirst(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	now := time.Now()
	if err := seed(ctx, coll,
		d("_id", "b-date", "at", now),
		d("_id", "c-number", "at", int32(5)),
		d("_id", "a-missing"),
		d("_id", "d-null", "at", nil)); err != nil {
		return err
	}
	// missing and null compare equal: the _id breaks the tie
	return ordered(ctx, coll, d(), store.FindOptions{Sort: d("at", int32(1), "_id", int32(1))}, "a-missing", "d-null", "c-number", "b-date")
}

func probeDeletePinned(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	if err := seed(ctx, coll, d("_id", "e", "state", int32(3), "version", int32(5))); err != nil {
		return err
	}
	var errs []error
	if n, err := coll.DeleteOne(ctx, d("_id", "e", "version", int32(4), "state", int32(3))); err != nil || n != 0 {
		errs = append(errs, fmt.Errorf("a delete on another version deleted %d, %v; want 0", n, err))
	}
	if n, err := coll.DeleteOne(ctx, d("_id", "e", "version", int32(5), "state", int32(3))); err != nil || n != 1 {
		errs = append(errs, fmt.Errorf("the pinned delete deleted %d, %v; want 1", n, err))
	}
	if n, err := coll.DeleteOne(ctx, d("_id", "e", "version", int32(5), "state", int32(3))); err != nil || n != 0 {
		errs = append(errs, fmt.Errorf("the pinned delete again deleted %d, %v; want 0", n, err))
	}
	return errors.Join(errs...)
}

func probeIndexesTwice(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	indexes := []store.Index{
		{Name: "state_nextAttemptAt", Keys: d("state", int32(1), "nextAttemptAt", int32(1))},
		{Name: "key_unique", Keys: d("key", int32(1)), Unique: true},
	}
	var errs []error
	for i := range 2 {
		if err := coll.EnsureIndexes(ctx, indexes); err != nil {
			errs = append(errs, fmt.Errorf("createIndexes %d of the same two indexes: %w", i+1, err))
		}
	}
	if err := coll.EnsureIndexes(ctx, indexes[:1]); err != nil {
		errs = append(errs, fmt.Errorf("createIndexes of one existing index: %w", err))
	}
	return errors.Join(errs...)
}

const (
	racers = 8
	rounds = 50
)

// race runs op in racers goroutines at once, rounds times on a fresh
// document each round (prepare inserts it), and checks that exactly one
// op per round won. op reports whether it won, or an error.
func race(ctx context.Context, prepare func(round int) error, op func(round int) (bool, error)) error {
	var errs []error
	lost := 0
	for r := range rounds {
		if err := prepare(r); err != nil {
			return err
		}
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			won   = make([]bool, racers)
			errsR = make([]error, racers)
		)
		for i := range racers {
			wg.Go(func() {
				<-start
				won[i], errsR[i] = op(r)
			})
		}
		close(start)
		wg.Wait()
		winners, failed := 0, 0
		for i := range racers {
			if errsR[i] != nil {
				failed++
				errs = append(errs, fmt.Errorf("round %d: %w", r, errsR[i]))
			}
			if won[i] {
				winners++
			}
		}
		if winners != 1 {
			errs = append(errs, fmt.Errorf("round %d: %d of %d won, want exactly 1", r, winners, racers))
		}
		if winners != 1 || failed > 0 {
			lost++
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d rounds broke: %w", lost, rounds, errors.Join(errs[:min(len(errs), 3)]...))
	}
	return nil
}

func raceID(r int) string { return fmt.Sprintf("e%d", r) }

func probeConcurrentFindOneAndUpdate(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	return race(ctx,
		func(r int) error { return seed(ctx, coll, d("_id", raceID(r), "version", int32(0))) },
		func(r int) (bool, error) {
			_, err := coll.FindOneAndUpdate(ctx, d("_id", raceID(r), "version", int32(0)),
				d("$inc", d("version", int32(1), "attempts", int32(1))))
			if errors.Is(err, store.ErrNotFound) {
				return false, nil
			}
			return err == nil, err
		})
}

func probeConcurrentUpdateOne(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	return race(ctx,
		func(r int) error {
			return seed(ctx, coll, d("_id", raceID(r), "state", int32(2), "version", int32(3)))
		},
		func(r int) (bool, error) {
			n, err := coll.UpdateOne(ctx, d("_id", raceID(r), "version", int32(3), "state", int32(2)),
				d("$set", d("state", int32(1), "version", int32(4))), false)
			return n == 1, err
		})
}

func probeConcurrentLease(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	return race(ctx,
		func(r int) error { return seed(ctx, coll, d("_id", raceID(r), "state", int32(0))) },
		func(r int) (bool, error) {
			_, err := coll.FindOneAndUpdate(ctx, leaseFilter(raceID(r)),
				d("$set", d("retrigger.lease", d("token", int64(r)))))
			if errors.Is(err, store.ErrNotFound) {
				return false, nil
			}
			return err == nil, err
		})
}

func probeConcurrentDelete(ctx context.Context, db store.Database) error {
	coll := db.Collection("events")
	return race(ctx,
		func(r int) error {
			return seed(ctx, coll, d("_id", raceID(r), "state", int32(3), "version", int32(5)))
		},
		func(r int) (bool, error) {
			n, err := coll.DeleteOne(ctx, d("_id", raceID(r), "version", int32(5), "state", int32(3)))
			return n == 1, err
		})
}

func probeConcurrentUpsert(ctx context.Context, db store.Database) error {
	coll := db.Collection("errors")
	err := race(ctx,
		func(int) error { return nil },
		func(r int) (bool, error) {
			n, err := coll.UpdateOne(ctx, d("_id", raceID(r)), d("$setOnInsert", d("type", "email")), true)
			return err == nil && n == 0, err // the one that inserted wins
		})
	if n, cerr := coll.Count(ctx, nil); cerr != nil || n != rounds {
		err = errors.Join(err, fmt.Errorf("%d documents after %d rounds of racing upserts (%v), want %d", n, rounds, cerr, rounds))
	}
	return err
}
