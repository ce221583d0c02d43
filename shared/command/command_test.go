package command

import (
	"flag"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/retrigger/retrigger/shared/config"
)

func TestFlagsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"ok from env", map[string]string{"RETRIGGER_MONGODB_URI": "mongodb://u:secret@h1,h2/?replicaSet=rs0"}, nil, ""},
		{"ok from flag", nil, []string{"-mongodb-uri", "mongodb+srv://cluster.example.net"}, ""},
		{"uri missing", nil, nil, "invalid -mongodb-uri (RETRIGGER_MONGODB_URI): is required"},
		{"uri scheme, password redacted", map[string]string{"RETRIGGER_MONGODB_URI": "http://u:secret@h"}, nil, "must start with mongodb://"},
		{"nats url", map[string]string{"RETRIGGER_MONGODB_URI": "mongodb://h", "RETRIGGER_NATS_URL": "::"}, nil, "invalid -nats-url (RETRIGGER_NATS_URL)"},
		{"nats url unparsable", map[string]string{"RETRIGGER_MONGODB_URI": "mongodb://h", "RETRIGGER_NATS_URL": "nats://user:secret@[bad"}, nil, "invalid -nats-url (RETRIGGER_NATS_URL)"},
		{"log level", map[string]string{"RETRIGGER_MONGODB_URI": "mongodb://h", "RETRIGGER_LOG_LEVEL": "loud"}, nil, "invalid -log-level"},
		{"stream prefix", map[string]string{"RETRIGGER_MONGODB_URI": "mongodb://h", "RETRIGGER_STREAM_PREFIX": "A.B"}, nil, "invalid -stream-prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var f Flags
			f.Register(fs)
			require.NoError(t, config.Parse(fs, tt.args, func(k string) string { return tt.env[k] }))
			err := f.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), "secret", "credentials never reach an error message")
		})
	}
}
