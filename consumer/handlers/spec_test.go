package handlers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseSpec(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		spec      string
		wantTypes []string
		wantErr   string
	}{
		{"http and demo", "email=http:https://mailer.internal/send; test=demo", []string{"email", "test"}, ""},
		{"missing", "", nil, "is empty"},
		{"only separators", ";;", nil, "names no handler"},
		{"no kind", "email", nil, `"email": want TYPE=http:URL or TYPE=demo`},
		{"unknown kind", "email=smtp:x", nil, `unknown handler "smtp"`},
		{"bad url", "email=http:not-a-url", nil, "type email"},
		{"type twice", "email=demo;email=demo", nil, "type email is named twice"},
		{"invalid type", "em.ail=demo", nil, `invalid event field "type"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSpec(tt.spec, SpecOptions{HTTPTimeout: time.Second, Demo: DemoConfig{FailureRate: 0.5}})
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
	_, err := ParseSpec("x=demo", SpecOptions{Demo: DemoConfig{FailureRate: 2}})
	require.ErrorContains(t, err, "FailureRate")
}
