package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/nats-io/nats.go"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/producer"
	"github.com/retrigger/retrigger/shared/natsserver"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

// A worker runs the handler registered for each event type. Here it runs
// on the embedded engine and an in-process nats-server; in production pass
// a mongostore database and a connection to your NATS cluster.
func ExampleNewWorker() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, _ := os.MkdirTemp("", "retrigger-example-")
	defer os.RemoveAll(dir)
	srv, _ := natsserver.Start(natsserver.Options{Port: -1, StoreDir: dir})
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	db, _ := embedded.Open(ctx, embedded.Options{})
	defer db.Close(ctx)

	written := make(chan consumer.Transition, 1)
	sendEmail := func(ctx context.Context, ev *consumer.Event) error {
		to, ok := ev.Payload.Lookup("to").StringValueOK()
		if !ok {
			return consumer.Permanent(errors.New("payload.to is missing")) // straight to errors
		}
		fmt.Println("sending email to", to)
		return nil // an error would be retried with backoff
	}
	w, err := consumer.NewWorker(consumer.Config{
		Handlers:     map[string]consumer.Handler{"email": sendEmail},
		OnTransition: func(t consumer.Transition) { written <- t },
	}, db, nc)
	if err != nil {
		fmt.Println(err)
		return
	}
	p, _ := producer.New(producer.Config{}, db, nc)
	var running sync.WaitGroup
	running.Go(func() { _ = p.Run(ctx) })
	<-p.Ready()
	running.Go(func() { _ = w.Run(ctx) })

	events := db.Collection("events")
	_ = events.InsertOne(ctx, bson.D{{Key: "_id", Value: "order-42"}, {Key: "type", Value: "email"}, {Key: "payload", Value: bson.D{{Key: "to", Value: "ada@example.com"}}}})
	t := <-written
	fmt.Printf("%s: %s -> %s\n", t.ID, t.From, t.To)

	cancel()       // as on SIGTERM: stop pulling, finish in-flight work,
	running.Wait() // then close the connection (deferred above)
	// Output:
	// sending email to ada@example.com
	// order-42: new -> success
}
