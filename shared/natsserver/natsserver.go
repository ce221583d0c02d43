// Package natsserver starts a real nats-server with JetStream inside the
// process, for the local run and the tests. Production connects to a NATS
// cluster instead.
package natsserver

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options of the embedded server.
type Options struct {
	Host     string // default 127.0.0.1
	Port     int    // -1 picks a free port (tests); 0 means 4222
	StoreDir string // JetStream's files; required
	// MaxPayload bounds one message in bytes; 0 keeps the server's 1 MiB.
	MaxPayload int32
}

// Start runs the server and waits until it accepts connections.
func Start(o Options) (*server.Server, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.StoreDir == "" {
		return nil, fmt.Errorf("starting nats-server: no JetStream store directory")
	}
	opts := &server.Options{
		ServerName: "retrigger-embedded",
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		MaxPayload: o.MaxPayload,
		NoSigs:     true,
		NoLog:      true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("starting nats-server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("starting nats-server on %s:%d: not ready after 10s", o.Host, o.Port)
	}
	return s, nil
}
