// Package natsserver starts a real nats-server with JetStream inside the
// process, for the local run and the tests. Production connects to a NATS
// cluster instead.
package natsserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
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

// readyTimeout bounds the wait for the server to accept connections.
const readyTimeout = 10 * time.Second

// Start runs the server and waits until it accepts connections. When it
// cannot, the error says why, wrapping the cause: a port in use
// (errors.Is(err, syscall.EADDRINUSE)), an address that is not this
// machine's (syscall.EADDRNOTAVAIL), a store directory that cannot be made
// (a file in its way: syscall.ENOTDIR), or what the server logged.
func Start(o Options) (*server.Server, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.StoreDir == "" {
		return nil, fmt.Errorf("starting nats-server: no JetStream store directory")
	}
	if err := os.MkdirAll(o.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("starting nats-server: creating its JetStream store directory: %w", err)
	}
	port := o.Port
	if port == 0 {
		port = server.DEFAULT_PORT
	}
	addr := net.JoinHostPort(o.Host, strconv.Itoa(port))
	if port > 0 {
		// The server only logs a listen error and never becomes ready:
		// try the address first, for an error that says why.
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("starting nats-server on %s: %w", addr, err)
		}
		_ = l.Close()
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
	errs := &errorLog{}
	s.SetLoggerV2(errs, false, false, false)
	s.Start()
	deadline := time.Now().Add(readyTimeout)
	for !s.ReadyForConnections(50 * time.Millisecond) {
		if err := errs.fatal(); err != nil || time.Now().After(deadline) {
			s.Shutdown()
			if err == nil {
				err = errs.last()
			}
			return nil, fmt.Errorf("starting nats-server on %s: not ready after %s: %w", addr, readyTimeout, err)
		}
	}
	if err := errs.fatal(); err != nil {
		// JetStream failed to start, the listener did not.
		s.Shutdown()
		return nil, fmt.Errorf("starting nats-server on %s: %w", addr, err)
	}
	return s, nil
}

// errorLog keeps the errors the server logs; it discards the rest.
type errorLog struct {
	mu     sync.Mutex
	errs   []string
	failed string // the first fatal error
}

func (l *errorLog) record(fatal bool, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := fmt.Sprintf(format, v...)
	l.errs = append(l.errs, msg)
	if fatal && l.failed == "" {
		l.failed = msg
	}
}

func (l *errorLog) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed == "" {
		return nil
	}
	return errors.New(l.failed)
}

func (l *errorLog) last() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) == 0 {
		return errors.New("the server logged no error")
	}
	return errors.New(l.errs[len(l.errs)-1])
}

func (l *errorLog) Noticef(string, ...any)         {}
func (l *errorLog) Warnf(string, ...any)           {}
func (l *errorLog) Debugf(string, ...any)          {}
func (l *errorLog) Tracef(string, ...any)          {}
func (l *errorLog) Errorf(format string, v ...any) { l.record(false, format, v...) }
func (l *errorLog) Fatalf(format string, v ...any) { l.record(true, format, v...) }
