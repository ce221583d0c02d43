package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/retrigger/retrigger/admin/ui"
	"github.com/retrigger/retrigger/shared/config"
)

// DefaultUIAddr is where `retrigger ui` serves unless -http-addr says
// otherwise: loopback, so that nobody else reaches it by default.
const DefaultUIAddr = "127.0.0.1:8090"

// uiOptions are the flags of `retrigger ui`; -http-addr is the common
// flag, whose default this command sets to DefaultUIAddr.
type uiOptions struct {
	allowWrites   bool
	basicAuthFile string
}

func (o *uiOptions) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.allowWrites, "allow-writes", false, "ui: offer and accept the actions (retry, cancel, redrive, purge); default read-only")
	fs.StringVar(&o.basicAuthFile, "basic-auth-file", "", "ui: require HTTP basic auth with the users of this file, one user:password a line (plain, or a bcrypt hash from htpasswd -B)")
	if f := fs.Lookup("http-addr"); f != nil {
		f.Usage = "ui: address serving the web view; keep it on loopback, or put it behind an authenticating proxy (see the README)"
		f.DefValue = DefaultUIAddr
		_ = f.Value.Set(DefaultUIAddr)
	}
}

// serveUI serves the web view until ctx ends.
func (r *runner) serveUI(ctx context.Context, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: ui takes flags, not arguments", errUsage)
	}
	if r.o.server != "" && r.io.Ops == nil {
		return fmt.Errorf("%w: ui connects to MongoDB and NATS itself (the local run serves the web view at its own address already)", errUsage)
	}
	var users *ui.Users
	if path := r.o.ui.basicAuthFile; path != "" {
		var err error
		if users, err = ui.LoadUsers(path); err != nil {
			return fmt.Errorf("%w: %v", errUsage, config.Invalid("basic-auth-file", "%s: %v", path, err))
		}
	}
	ops, closeOps, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer closeOps()
	backend, ok := ops.(ui.Backend)
	if !ok {
		return fmt.Errorf("%w: the web view needs the operations of a direct connection", errUsage)
	}
	by := "retrigger ui"
	if r.o.by != "" {
		by = r.o.by
	}
	log := r.log // "component":"retrigger" already: a JSON line carries a key once
	h, err := ui.New(ui.Config{Ops: backend, AllowWrites: r.o.ui.allowWrites, Users: users, By: by, Logger: &log})
	if err != nil {
		return err
	}
	addr := r.o.conn.HTTPAddr
	if addr == "" {
		addr = DefaultUIAddr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, config.Invalid("http-addr", "%v", err))
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && users == nil {
		log.Warn().Str("addr", ln.Addr().String()).Msg("the web view listens beyond loopback without -basic-auth-file: anyone who reaches it reads the events; put it behind an authenticating proxy")
	}
	mode := "read-only (-allow-writes to act on events)"
	if r.o.ui.allowWrites {
		mode = "writes allowed"
	}
	fmt.Fprintf(r.io.Out, "retrigger web view on http://%s, %s. Ctrl-C to stop.\n", ln.Addr(), mode)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
