package metrics

import "github.com/nats-io/nats.go"

// WatchNATS counts nc's disconnections and asynchronous errors (a slow
// consumer, a permissions violation) in retrigger_nats_errors_total, after
// the handlers nc already has.
func (m *Metrics) WatchNATS(nc *nats.Conn) {
	if m == nil || nc == nil {
		return
	}
	disconnected := nc.Opts.DisconnectedErrCB
	nc.SetDisconnectErrHandler(func(c *nats.Conn, err error) {
		m.NATSError("disconnect")
		if disconnected != nil {
			disconnected(c, err)
		}
	})
	async := nc.Opts.AsyncErrorCB
	nc.SetErrorHandler(func(c *nats.Conn, s *nats.Subscription, err error) {
		m.NATSError("async")
		if async != nil {
			async(c, s, err)
		}
	})
}
