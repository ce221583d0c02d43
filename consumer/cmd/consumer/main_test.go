package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/retrigger/retrigger/consumer/handlers"
)

func TestBuildHandlers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		spec      string
		wantTypes []string
		wantErr   string
	}{
		{"http and demo", "email=http:https://mailer.internal/send; test=demo", []string{"email", "test"}, ""},
		{"missing", "", nil, "invalid -handlers (RETRIGGER_HANDLERS): is required"},
		{"no kind", "email", nil, `"email": want TYPE=http:URL or TYPE=demo`},
		{"unknown kind", "email=smtp:x", nil, `unknown handler "smtp"`},
		{"bad url", "email=http:not-a-url", nil, "type email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := settings{handlers: tt.spec, httpTimeout: time.Second, demo: handlers.DemoConfig{FailureRate: 0.5}}
			got, err := s.build()
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Len(t, got, len(tt.wantTypes))
			for _, typ := range tt.wantTypes {
				require.NotNil(t, got[typ], typ)
			}
		})
	}
	_, err := settings{handlers: "x=demo", demo: handlers.DemoConfig{FailureRate: 2}}.build()
	require.ErrorContains(t, err, "-demo-failure-rate")
}
