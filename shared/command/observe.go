package command

import (
	"context"
	"time"

	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/health"
	"github.com/retrigger/retrigger/shared/metrics"
	"github.com/retrigger/retrigger/shared/version"
)

// observe gives env its metrics (those of part and of every process) and
// health, wraps its database to count
// storage errors, and serves /metrics, /healthz and /readyz on -http-addr
// when it is set. The returned close stops the server, then calls
// closeAll.
func (f *Flags) observe(env Env, part metrics.Part, closeAll func()) (Env, func(), error) {
	var parts []metrics.Part
	if part != "" {
		parts = append(parts, part)
	}
	env.Metrics = metrics.New(version.Version, parts...)
	env.Health = health.New()
	env.Metrics.WatchNATS(env.NATS)
	st := eventstore.New(env.DB, f.Store)
	env.Health.Check("nats", health.NATS(env.NATS))
	env.Health.Check("mongodb", st.Ping)
	env.DB = env.Metrics.WrapDatabase(env.DB)
	if f.HTTPAddr == "" {
		return env, closeAll, nil
	}
	srv, err := health.Listen(f.HTTPAddr, env.Health.Mux(env.Metrics.Handler()))
	if err != nil {
		closeAll()
		return Env{}, nil, err
	}
	env.Log.Info().Str("http_addr", srv.Addr()).Msg("serving /metrics, /healthz and /readyz")
	return env, func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Close(ctx) // the probes and scrapes in flight
		closeAll()
	}, nil
}
