package producer

import (
	"context"
	"errors"
	"time"

	"github.com/retrigger/retrigger/shared/health"
)

// stuckAfter is how long past its own period a producer loop may go
// without a heartbeat before /healthz calls it stuck: far longer than any
// one query or publish takes, so that a slow database makes the producer
// unready (its checks fail), not restarted.
const stuckAfter = 2 * time.Minute

// checkReady is the producer's readiness: as leader it watches the
// events collection (or runs, without change streams); leading or
// standing by, its streams exist. /readyz also shows which it is.
func (p *Producer) checkReady(ctx context.Context) error {
	if t := p.term.Load(); t != nil && !p.cfg.DisableChangeStreams {
		select {
		case <-t.relay.Ready():
		default:
			return errors.New("leading, but not watching the events collection yet")
		}
	}
	return health.JetStream(p.js, []string{p.cfg.Names.EventsStream(), p.cfg.Names.DLQStream()}, nil)(ctx)
}
