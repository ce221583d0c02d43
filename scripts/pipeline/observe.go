package pipeline

import (
	"fmt"
	"github.com/retrigger/retrigger/shared/tracing"
	"net/url"
	"path/filepath"
	"strconv"

	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/health"
	"github.com/retrigger/retrigger/shared/metrics"
	"github.com/retrigger/retrigger/shared/natsserver"
	"github.com/retrigger/retrigger/shared/version"
)

// observe gives the pipeline one set of metrics and one health for all
// its components, as a process running them all would have, and sets them
// in the components' options that have none.
func (p *Pipeline) observe(o *Options) {
	p.Metrics, p.Health = metrics.New(version.Version), health.New()
	p.Metrics.WatchNATS(p.Conn)
	p.db = p.Metrics.WrapDatabase(p.db)
	p.Health.Check("nats", health.NATS(p.Conn))
	p.Health.Check("storage", eventstore.New(p.db, o.Producer.Store).Ping)
	if o.Producer.Metrics == nil && o.Producer.Health == nil {
		o.Producer.Metrics, o.Producer.Health = p.Metrics, p.Health
	}
	if o.Worker.Metrics == nil && o.Worker.Health == nil {
		o.Worker.Metrics, o.Worker.Health = p.Metrics, p.Health
	}
	if o.Archiver.Metrics == nil && o.Archiver.Health == nil {
		o.Archiver.Metrics, o.Archiver.Health = p.Metrics, p.Health
	}
	for _, t := range []**tracing.Tracer{&o.Producer.Tracing, &o.Worker.Tracing, &o.Archiver.Tracing} {
		if *t == nil {
			*t = o.Tracing
		}
	}
}

// StopNATS shuts the embedded nats-server down, as an outage would; the
// components' connection keeps trying to reconnect.
func (p *Pipeline) StopNATS() {
	p.NATS.Shutdown()
	p.NATS.WaitForShutdown()
}

// StartNATS starts the embedded nats-server again on the same address and
// store, after StopNATS.
func (p *Pipeline) StartNATS() error {
	u, err := url.Parse(p.NATS.ClientURL()) // its address is gone with it
	if err != nil {
		return fmt.Errorf("restarting nats-server: %w", err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return fmt.Errorf("restarting nats-server: %w", err)
	}
	s, err := natsserver.Start(natsserver.Options{Host: u.Hostname(), Port: port,
		StoreDir: filepath.Join(p.opts.DataDir, "nats"), MaxPayload: p.opts.NATSMaxPayload})
	if err != nil {
		return err
	}
	p.NATS = s
	return nil
}
