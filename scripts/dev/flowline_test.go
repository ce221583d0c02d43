package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/shared/flow"
)

// The summary names what holds a type back, and nothing on the happy path.
func TestFlowLine(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	require.Empty(t, flowLine(admin.FlowStatus{Type: "demo", Breaker: flow.Closed, Waiting: 3}, now))
	require.Empty(t, flowLine(admin.FlowStatus{Type: "demo", Breaker: flow.Closed, Limits: "breaker min-runs=20,failure-ratio=0.8,window=30s,probe=5s,max-probe=30s", Waiting: 3}, now))
	require.Equal(t, "flow: demo rate 2/s · 131 waiting",
		flowLine(admin.FlowStatus{Type: "demo", Breaker: flow.Closed, Limits: "breaker min-runs=20,failure-ratio=0.8,window=30s,probe=5s,max-probe=30s; rate 2/s", Waiting: 131}, now))
	require.Equal(t, "flow: demo breaker open since 12s, next probe in 3s (20 of 20 runs failed in 30s) · 40 waiting",
		flowLine(admin.FlowStatus{Type: "demo", Breaker: flow.Open, Since: now.Add(-12 * time.Second), NextProbe: now.Add(3 * time.Second),
			Reason: "20 of 20 runs failed in 30s", Waiting: 40}, now))
	require.Equal(t, "flow: demo paused by ada for 30m0s · 2 waiting for their keys · 5 waiting",
		flowLine(admin.FlowStatus{Type: "demo", Breaker: flow.Closed, Pause: &admin.Pause{By: "ada", Until: now.Add(30 * time.Minute)}, Parked: 2, Waiting: 5}, now))
}
