package messaging

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/retrigger/retrigger/shared/natsserver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Every refusal a real nats-server gives a published message is
// classified by Refusal, on the synchronous and the asynchronous publish
// (the relay's), and CheckSize predicts the size refusals before sending.
func TestRefusals(t *testing.T) {
	t.Parallel()
	srv, err := natsserver.Start(natsserver.Options{Port: -1, StoreDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.MemoryStorage, Duplicates: time.Minute})
	require.NoError(t, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.MemoryStorage, MaxMsgSize: 1000})
	require.NoError(t, err)
	maxPayload := int(nc.MaxPayload())

	msg := func(subject string, header nats.Header, body int) *nats.Msg {
		return &nats.Msg{Subject: subject, Header: header, Data: make([]byte, body)}
	}
	big := func(n int) nats.Header { return nats.Header{HeaderID: []string{strings.Repeat("i", n)}} }
	// The largest Retrigger-Id value whose headers fit: "NATS/1.0\r\n",
	// "Retrigger-Id: " ... "\r\n", "\r\n".
	fits := MaxHeaderBytes - len("NATS/1.0\r\n") - len(HeaderID) - 4 - 2
	tests := []struct {
		name  string
		msg   *nats.Msg
		want  error // nil: not refused
		check error // CheckSize's verdict
	}{
		{"headers at the limit", msg("t.a", big(fits), 10), nil, nil},
		{"headers a byte over the limit", msg("t.b", big(fits+1), 10), ErrHeadersTooLarge, ErrHeadersTooLarge},
		{"headers of 800 KB", msg("t.c", big(800<<10), 10), ErrHeadersTooLarge, ErrHeadersTooLarge},
		{"body over max_payload", msg("t.d", nil, maxPayload+1), ErrMessageTooLarge, ErrMessageTooLarge},
		{"over the stream's max_msg_size", msg("s.a", nil, 2000), ErrMessageTooLarge, nil},
		{"subject with a space", msg("t.a b", nil, 1), ErrMalformed, nil},
		{"empty subject", msg("", nil, 1), ErrMalformed, nil},
		{"header name with a space", msg("t.e", nats.Header{"a b": []string{"x"}}, 1), ErrMalformed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.check == nil {
				require.NoError(t, CheckSize(tt.msg, maxPayload))
			} else {
				require.ErrorIs(t, CheckSize(tt.msg, maxPayload), tt.check)
			}
			_, err := js.PublishMsg(ctx, tt.msg)
			refused := Refusal(err)
			if tt.want == nil {
				require.NoError(t, err)
				require.NoError(t, refused)
				return
			}
			require.Error(t, err)
			require.ErrorIs(t, refused, tt.want, "%v", err)
			require.ErrorIs(t, refused, err, "the refusal keeps what NATS said")

			// The relay publishes asynchronously: the refusal comes from
			// the client at once, or from the server on the ack.
			fut, err := js.PublishMsgAsync(tt.msg)
			if err == nil {
				select {
				case <-fut.Ok():
					t.Fatal("acknowledged")
				case err = <-fut.Err():
				case <-ctx.Done():
					t.Fatal("no answer")
				}
			}
			require.ErrorIs(t, Refusal(err), tt.want, "%v", err)
		})
	}

	// A duplicate is acknowledged, not refused.
	dup := &nats.Msg{Subject: "t.dup", Header: nats.Header{nats.MsgIdHdr: []string{"one"}}, Data: []byte("x")}
	_, err = js.PublishMsg(ctx, dup)
	require.NoError(t, err)
	ack, err := js.PublishMsg(ctx, dup)
	require.NoError(t, err)
	require.True(t, ack.Duplicate)

	// No stream: missing, not a refusal of the message.
	_, err = js.PublishMsg(ctx, msg("nowhere.a", nil, 1))
	require.Error(t, err)
	require.NoError(t, Refusal(err))
	require.True(t, IsStreamMissing(err))

	// Passing faults are not refusals.
	require.NoError(t, Refusal(context.DeadlineExceeded))
	require.NoError(t, Refusal(nats.ErrConnectionClosed))
	require.NoError(t, Refusal(nil))
}
