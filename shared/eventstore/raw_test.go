package eventstore

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/event"
)

// The documents the hot path builds as raw BSON are, byte for byte, their
// readable bson.D twins below, over the cases that change their shape.
func TestRawDocumentsAreTheirReadableTwins(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 3, 4, 5, 678912345, time.UTC)
	oid := bson.NewObjectID()
	ids := []bson.RawValue{
		{Type: bson.TypeObjectID, Value: oid[:]},
		mustValue(t, "order-17"),
		mustValue(t, int32(-5)),
		mustValue(t, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: bson.A{"x"}}}),
	}
	stores := []*Store{
		{opts: Options{}.WithDefaults()},
		{opts: Options{Schema: event.Schema{AttemptsField: "count", DefaultType: "legacy"}, History: 3}.WithDefaults()},
		{opts: Options{History: -1}.WithDefaults()},
	}
	long := make([]byte, 700)
	for i := range long {
		long[i] = 'e'
	}
	histories := [][]event.Attempt{nil, {
		{At: now.Add(-time.Hour), Took: 1500 * time.Millisecond, Outcome: "failed", Error: string(long), Replica: "r1", Number: 1},
		{At: now.Add(-time.Minute), Outcome: "crashed"},
		{At: now.Add(-time.Second), Outcome: "failed", Error: "boom", Replica: "r2", Number: 2,
			TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7"},
	}}
	for _, s := range stores {
		for _, id := range ids {
			for _, typ := range []string{"email", "legacy", ""} {
				r := ClaimRequest{ID: id, Type: typ, Owner: "replica-1", Token: 42, Now: now, TTL: 30 * time.Second, Early: time.Second}
				requireSame(t, bson.D{
					{Key: event.FieldID, Value: r.ID},
					{Key: "$and", Value: bson.A{s.ofType(r.Type), runnable(r.Now.Add(r.Early)), unleasedOr(r.Token)}},
				}, s.claimFilter(r))
			}
			lease := event.Lease{Owner: "replica-1", Token: -7, Until: now}
			requireSame(t, bson.D{{Key: "$set", Value: bson.D{{Key: event.FieldLease, Value: leaseDoc(lease)}}}}, claimUpdate(lease))
			for _, version := range []int64{0, 1, 1 << 40} {
				for _, state := range []event.State{event.StateNew, event.StateFailed} {
					for _, h := range histories {
						c := &Claim{Event: event.Event{ID: id, Version: version, State: state, History: h}, Lease: lease}
						requireSame(t, append(current(&c.Event), bson.E{Key: event.FieldLeaseToken, Value: c.Lease.Token}), completeFilter(c))
						for _, tr := range []Transition{
							{To: event.StateSuccess, At: now, Run: event.Attempt{At: now, Took: 3 * time.Millisecond, Outcome: "success", Replica: "r", Number: 1}},
							{To: event.StateSuccess, At: now, Run: event.Attempt{At: now, Outcome: "success", Replica: "r", Number: 3,
								TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331"}},
							{To: event.StateFailed, At: now, Attempts: 2, NextAt: now.Add(1500 * time.Microsecond), Run: event.Attempt{At: now, Outcome: "failed", Error: "x"},
								LastError: event.LastError{Message: "boom", Retryable: true, At: now}},
							{To: event.StateError, At: now, Attempts: 5, Reason: event.ReasonExhausted, Run: event.Attempt{At: now, Outcome: "error"},
								LastError: event.LastError{Message: "no", At: now}},
							{To: event.StateSuccess, At: now, Key: "k1", Seq: 7 << 32, Run: event.Attempt{At: now, Outcome: "success"}},
							{To: event.StateNew, At: now, Key: "k2", Seq: 1, Run: event.Attempt{At: now, Outcome: "probe", Error: "503"},
								LastError: event.LastError{Message: "503", Retryable: true, At: now}},
						} {
							requireSame(t, completeTwin(s, &c.Event, tr), s.completeUpdate(&c.Event, tr))
							parked := *c
							parked.Event.ParkedAt = now
							requireSame(t, completeTwin(s, &parked.Event, tr), s.completeUpdate(&parked.Event, tr))
						}
					}
				}
			}
		}
	}
}

// completeTwin is Complete's update as a bson.D.
func completeTwin(s *Store, ev *event.Event, t Transition) bson.D {
	set := bson.D{
		{Key: event.FieldState, Value: stateValue(t.To)},
		{Key: event.FieldVersion, Value: ev.Version + 1},
		{Key: event.FieldUpdatedAt, Value: t.At},
	}
	unset := bson.D{{Key: event.FieldLease, Value: ""}, {Key: event.FieldCrashes, Value: ""}}
	if t.To != event.StateSuccess {
		set = append(set,
			bson.E{Key: s.opts.Schema.Attempts(), Value: t.Attempts},
			bson.E{Key: event.FieldLastError, Value: t.LastError})
	}
	switch t.To {
	case event.StateFailed:
		set = append(set, bson.E{Key: event.FieldNextAttemptAt, Value: ceilMillisecond(t.NextAt)})
	case event.StateError:
		set = append(set, bson.E{Key: event.FieldReason, Value: string(t.Reason)})
		unset = append(unset, bson.E{Key: event.FieldNextAttemptAt, Value: ""})
	default:
		unset = append(unset, bson.E{Key: event.FieldNextAttemptAt, Value: ""})
	}
	if h := s.history(ev.History, t.Run); h != nil {
		set = append(set, bson.E{Key: event.FieldHistory, Value: h})
	}
	if t.Key != "" {
		set = append(set, bson.E{Key: event.FieldKey, Value: t.Key}, bson.E{Key: event.FieldSeq, Value: KeySeq(ev, t.Seq)})
	}
	if !ev.ParkedAt.IsZero() {
		unset = append(unset, bson.E{Key: event.FieldParkedAt, Value: ""})
	}
	return bson.D{{Key: "$set", Value: set}, {Key: "$unset", Value: unset}}
}

func requireSame(t *testing.T, twin bson.D, raw bson.Raw) {
	t.Helper()
	want, err := bson.Marshal(twin)
	require.NoError(t, err)
	require.Equal(t, bson.Raw(want).String(), raw.String())
	require.Equal(t, want, []byte(raw))
}

func mustValue(t *testing.T, v any) bson.RawValue {
	t.Helper()
	typ, data, err := bson.MarshalValue(v)
	require.NoError(t, err)
	return bson.RawValue{Type: typ, Value: data}
}

func TestIndexKeys(t *testing.T) {
	t.Parallel()
	for _, i := range []int{0, 7, 10, 63, 64, 99, 1234} {
		require.Equal(t, strconv.Itoa(i), index(i))
	}
}
