package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS is a readiness check: nc is connected (not reconnecting, not
// closed).
func NATS(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		if st := nc.Status(); st != nats.CONNECTED {
			return fmt.Errorf("NATS connection is %s", st)
		}
		return nil
	}
}

// JetStream is a readiness check: the streams exist, and the durable
// consumers of each stream in consumers (stream -> names) too.
func JetStream(js jetstream.JetStream, streams []string, consumers func() map[string][]string) func(context.Context) error {
	return func(ctx context.Context) error {
		for _, s := range streams {
			if _, err := js.Stream(ctx, s); err != nil {
				return fmt.Errorf("stream %s: %w", s, err)
			}
		}
		if consumers == nil {
			return nil
		}
		for s, names := range consumers() {
			for _, n := range names {
				if _, err := js.Consumer(ctx, s, n); err != nil {
					return fmt.Errorf("consumer %s on %s: %w", n, s, err)
				}
			}
		}
		return nil
	}
}

// Server serves the health endpoints (and whatever else its handler
// routes) on one address.
type Server struct {
	srv *http.Server
	ln  net.Listener
	err chan error
}

// Listen starts serving handler on addr ("127.0.0.1:8080", ":8080"; port 0
// picks a free one).
func Listen(addr string, handler http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	s := &Server{srv: &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}, ln: ln, err: make(chan error, 1)}
	go func() { s.err <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address it listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, letting requests in flight finish until ctx
// ends. Safe to call twice.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if serr := <-s.err; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	s.err <- http.ErrServerClosed
	return err
}
