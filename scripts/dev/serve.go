package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/admin"
	"github.com/retrigger/retrigger/admin/ui"
	"github.com/retrigger/retrigger/scripts/pipeline"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/health"
)

// serve serves the local run's HTTP address: /metrics, /healthz, /readyz,
// the admin API that `retrigger -server http://ADDR` uses (the embedded
// store lives in this process, so another cannot open it) and the web view
// at / (its actions only when writes). It returns the base URL and a stop
// function; addr "" serves nothing.
func serve(p *pipeline.Pipeline, addr string, writes bool, log zerolog.Logger) (string, func(), error) {
	if addr == "" {
		return "", func() {}, nil
	}
	js, err := jetstream.New(p.Conn)
	if err != nil {
		return "", nil, err
	}
	o := p.Options()
	ops := admin.New(eventstore.New(p.Database(), o.Producer.Store), js, o.Producer.Names).WithTracing(o.Tracing)
	mux := p.Health.Mux(p.Metrics.Handler())
	mux.Handle("/admin/", admin.Handler(ops, log.With().Str("component", "admin").Logger()))
	uiLog := log.With().Str("component", "ui").Logger()
	web, err := ui.New(ui.Config{Ops: ops, AllowWrites: writes, By: "local run web view", Logger: &uiLog})
	if err != nil {
		return "", nil, err
	}
	mux.Handle("/", web)
	srv, err := health.Listen(addr, mux)
	if err != nil {
		return "", nil, fmt.Errorf("%w\n(is another local run using it? stop it, or pass -http-addr)", err)
	}
	return "http://" + srv.Addr(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	}, nil
}
