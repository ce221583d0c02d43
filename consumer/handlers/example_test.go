package handlers_test

import (
	"context"
	"fmt"
	"log"
	"maps"
	"slices"
	"time"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/consumer/handlers"
)

// Register built-in handlers by event type in a worker's configuration: an
// event of type "order.created" is POSTed to a webhook, one of type "demo"
// runs the demo handler.
func Example() {
	webhook, err := handlers.HTTP(handlers.HTTPConfig{
		URL:     "https://orders.example.com/hooks/retrigger",
		Timeout: 5 * time.Second,
		Headers: map[string]string{"Authorization": "Bearer <token>"},
	})
	if err != nil {
		log.Fatal(err)
	}
	demo := handlers.DemoConfig{FailureRate: 0.3, Latency: 50 * time.Millisecond}
	if err := demo.Validate(); err != nil {
		log.Fatal(err)
	}

	cfg := consumer.Config{
		Handlers: map[string]consumer.Handler{
			"order.created": webhook,
			"demo":          handlers.Demo(demo),
		},
	}
	// consumer.NewWorker(cfg, db, nc) builds a replica that runs them.
	fmt.Println(slices.Sorted(maps.Keys(cfg.Handlers)))
	// Output: [demo order.created]
}

// The demo handler fails as often as configured, and says so.
func ExampleDemo() {
	fail := handlers.Demo(handlers.DemoConfig{FailureRate: 1})
	fmt.Println(fail(context.Background(), &consumer.Event{Type: "demo"}))

	succeed := handlers.Demo(handlers.DemoConfig{FailureRate: 0})
	fmt.Println(succeed(context.Background(), &consumer.Event{Type: "demo"}))
	// Output:
	// demo: simulated failure (failure rate 100%)
	// <nil>
}
