package mongostore

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/retrigger/retrigger/shared/store"
)

// A server that cannot open a change stream at all is told apart from one
// that failed for now: only the first stops the relay.
func TestClassifyWatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want error // nil: no sentinel
	}{
		{"standalone mongod", mongo.CommandError{Code: 40573, Name: "Location40573", Message: "The $changeStream stage is only supported on replica sets"}, store.ErrNoChangeStreams},
		{"unknown stage", mongo.CommandError{Code: 40324, Message: "Unrecognized pipeline stage name: '$changeStream'"}, store.ErrNoChangeStreams},
		{"not implemented", mongo.CommandError{Code: 238, Name: "NotImplemented", Message: "$changeStream stage is not supported yet"}, store.ErrNoChangeStreams},
		{"command not supported", mongo.CommandError{Code: 115, Name: "CommandNotSupported", Message: "change streams are not supported"}, store.ErrNoChangeStreams},
		{"history lost", mongo.CommandError{Code: 286, Name: "ChangeStreamHistoryLost"}, store.ErrHistoryLost},
		{"an election", mongo.CommandError{Code: 10107, Name: "NotWritablePrimary"}, nil},
		{"network", errors.New("connection reset"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := classifyWatch(tt.err)
			require.ErrorContains(t, got, tt.err.Error(), "the cause stays")
			for _, sentinel := range []error{store.ErrNoChangeStreams, store.ErrHistoryLost} {
				require.Equal(t, sentinel == tt.want, errors.Is(got, sentinel), "%v", sentinel)
			}
		})
	}
}
