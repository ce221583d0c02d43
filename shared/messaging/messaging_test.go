package messaging

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/config"
	"github.com/retrigger/retrigger/shared/event"
)

func TestRefRoundTrip(t *testing.T) {
	t.Parallel()
	for _, id := range []any{bson.NewObjectID(), "order-1", int64(7), bson.Binary{Subtype: 4, Data: make([]byte, 16)}, bson.D{{Key: "a", Value: 1}}} {
		raw, err := bson.Marshal(bson.D{{Key: "_id", Value: id}, {Key: "payload", Value: bson.D{{Key: "$numberLong", Value: "x"}}}})
		require.NoError(t, err)
		rid := bson.Raw(raw).Lookup("_id")
		body, err := Body(raw)
		require.NoError(t, err)
		m := NewMsg("retrigger.events.t", MsgID(rid, "0"), rid, 4, body)
		got, err := ReadRef(m.Header)
		require.NoError(t, err)
		require.Equal(t, rid.Type, got.ID.Type)
		require.Equal(t, rid.Value, got.ID.Value)
		require.EqualValues(t, 4, got.Version)
		require.Equal(t, event.Key(rid)+"@0", m.Header.Get(nats.MsgIdHdr))
	}
	_, err := ReadRef(nats.Header{})
	require.ErrorIs(t, err, ErrNotARef)
	_, err = ReadRef(nats.Header{HeaderID: []string{"!!"}})
	require.Error(t, err)
}

// The producer's message (NewStampedMsg) is the message NewMsg builds
// with MsgID, whatever the stamp and the id; a change's stamp is
// ChangeStamp, which ChangeOrder reads back.
func TestStampedMsgIsNewMsg(t *testing.T) {
	t.Parallel()
	ts := bson.Timestamp{T: 1764662400, I: 17}
	require.Equal(t, "c1764662400.17", ChangeStamp(ts))
	stamps := []Stamp{{Change: ts}, {Prefix: "rejected.", Change: ts}, {Text: "v3.due1764662400123"}, {Prefix: "rejected.", Text: "v1.s0"},
		{Text: strings.Repeat("9", 300)}}
	ids := []any{bson.NewObjectID(), "order-1", "with space", int32(-7), int64(7), bson.Binary{Subtype: 4, Data: make([]byte, 16)},
		bson.D{{Key: "a", Value: 1}}, strings.Repeat("x", 500)}
	for _, v := range ids {
		raw, err := bson.Marshal(bson.D{{Key: "_id", Value: v}})
		require.NoError(t, err)
		rid := bson.Raw(raw).Lookup("_id")
		for _, st := range stamps {
			for _, version := range []int64{0, 9, -1, 1 << 62} {
				want := NewMsg("s", MsgID(rid, st.String()), rid, version, []byte("{}"))
				got := NewStampedMsg("s", rid, st, version, []byte("{}"))
				require.Equal(t, want, got)
				require.Equal(t, st.Prefix+st.Text+map[bool]string{true: ChangeStamp(ts)}[st.Text == ""], st.String())
				if st == (Stamp{Change: ts}) {
					require.EqualValues(t, int64(ts.T)<<32|int64(ts.I), ChangeOrder(got.Header))
				}
			}
		}
	}
}

// The relay's message costs five allocations whatever its id and stamp:
// the header values' one string and the array of their slices, the
// message, the header map and its entries. Its body costs one: the
// document's strings are escaped from its own bytes.
func TestRelayMessageAllocations(t *testing.T) {
	raw, err := bson.Marshal(bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "type", Value: "order"},
		{Key: "payload", Value: bson.D{{Key: "data", Value: strings.Repeat("x", 256)}, {Key: "n", Value: int64(7)}}}})
	require.NoError(t, err)
	id := bson.Raw(raw).Lookup("_id")
	st := Stamp{Change: bson.Timestamp{T: 1764662400, I: 17}}
	require.LessOrEqual(t, testing.AllocsPerRun(100, func() { _ = NewStampedMsg("retrigger.events.order", id, st, 3, nil) }), 5.0)
	require.Equal(t, 1.0, testing.AllocsPerRun(100, func() { _, _ = Body(raw) }))
}

func TestNames(t *testing.T) {
	t.Parallel()
	n := Names{StreamPrefix: "ACME", SubjectPrefix: "acme"}
	require.Equal(t, "ACME_EVENTS", n.EventsStream())
	require.Equal(t, "ACME_DLQ", n.DLQStream())
	require.Equal(t, "acme.events.email", n.EventSubject("email"))
	require.Equal(t, "acme.dlq.email", n.DLQSubject("email"))
	require.Equal(t, []string{"acme.events.>"}, n.EventsConfig(StreamOptions{}).Subjects)
	require.Equal(t, 2*time.Minute, n.EventsConfig(StreamOptions{}).Duplicates)
	require.Equal(t, "ACME_WORKERS_email", n.WorkersConsumer("email"))
	require.Equal(t, "acme.events.email", n.WorkersConfig("email", ConsumerOptions{}).FilterSubject)
	typ, ok := n.TypeOf("acme.events.email")
	require.True(t, ok)
	require.Equal(t, "email", typ)
	// Types a consumer name cannot hold are cleaned and told apart by a hash.
	a, b := n.WorkersConsumer("orders/new"), n.WorkersConsumer("orders\\new")
	require.NotEqual(t, a, b)
	require.Regexp(t, `^ACME_WORKERS_orders_new_[0-9a-f]{8}$`, a)
}

func TestNamesValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, stream, subject, wantErr string
	}{
		{"defaults", "RETRIGGER", "retrigger", ""},
		{"subject with tokens", "ACME", "acme.retrigger", ""},
		{"empty token", "ACME", "a..b", `invalid messaging.Names.SubjectPrefix: "a..b" has an empty token`},
		{"leading dot", "ACME", ".a", "has an empty token"},
		{"trailing dot", "ACME", "a.", "has an empty token"},
		{"only a dot", "ACME", ".", "has an empty token"},
		{"subject wildcard", "ACME", "a.*", "must not contain '*'"},
		{"subject space", "ACME", "a b", "must not contain"},
		{"subject tab", "ACME", "a\tb", "must not contain"},
		{"subject control", "ACME", "a\x01b", "must not contain"},
		{"subject empty", "ACME", "", "SubjectPrefix: must not be empty"},
		{"stream dot", "A.B", "a", "StreamPrefix"},
		{"stream slash", "A/B", "a", "StreamPrefix"},
		{"stream backslash", `A\B`, "a", "StreamPrefix"},
		{"stream wildcard", "A>", "a", "StreamPrefix"},
		{"stream empty", "", "a", "StreamPrefix: must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Names{StreamPrefix: tt.stream, SubjectPrefix: tt.subject}.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			flag := "-subject-prefix (RETRIGGER_SUBJECT_PREFIX)"
			if strings.Contains(tt.wantErr, "StreamPrefix") {
				flag = "-stream-prefix (RETRIGGER_STREAM_PREFIX)"
			}
			require.ErrorContains(t, config.ForFlags(err), "invalid "+flag)
		})
	}
}
