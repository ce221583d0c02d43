package consumer

import (
	"context"
	"time"

	"github.com/retrigger/retrigger/shared/health"
	"github.com/retrigger/retrigger/shared/metrics"
)

// observer is what a pool reports to: a heartbeat per pull loop, and the
// NATS errors that make it open its consumer again.
type observer struct {
	m     *metrics.Metrics
	h     *health.Health
	stuck time.Duration
}

// observe makes the pool report its pull loops' heartbeats to h and their
// failures to m. A pull loop holding a message it cannot hand to a slot
// for longer than the longest run a slot can hold (bound) plus a margin
// is stuck: every slot is taken by handlers that never return.
func (p *pool) observe(m *metrics.Metrics, h *health.Health, bound time.Duration) {
	p.obs = observer{m: m, h: h, stuck: 2*bound + p.drain + time.Minute}
}

func (o observer) loop(source string) *health.Loop {
	return o.h.Loop("pull "+source, o.stuck)
}

func (o observer) failed(string) { o.m.NATSError("pull") }

// checkReady is a replica's readiness: the EVENTS stream and the
// consumer of each of its types exist.
func (w *Worker) checkReady(ctx context.Context) error {
	names := make([]string, len(w.types))
	for i, typ := range w.types {
		names[i] = w.cfg.Names.WorkersConsumer(typ)
	}
	return health.JetStream(w.js, []string{w.cfg.Names.EventsStream()},
		func() map[string][]string { return map[string][]string{w.cfg.Names.EventsStream(): names} })(ctx)
}

// checkReady is the archiver's readiness: the DLQ stream and its consumer
// exist.
func (a *Archiver) checkReady(ctx context.Context) error {
	n := a.cfg.Names
	return health.JetStream(a.js, []string{n.DLQStream()},
		func() map[string][]string { return map[string][]string{n.DLQStream(): {n.ArchiverConsumer()}} })(ctx)
}
