package consumer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pull delivers the messages of cons to handle, at most concurrency at a
// time, until ctx ends. Then it stops pulling, hands buffered messages back
// (nak) and waits up to drain for the handlers in flight; after that it
// cancels their context and waits for them to return.
func pull(ctx context.Context, cons jetstream.Consumer, concurrency int, drain time.Duration, handle func(context.Context, jetstream.Msg)) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(concurrency))
	if err != nil {
		return err
	}
	// Handlers run under their own context, cancelled only after the drain
	// deadline, so a shutdown lets in-flight work finish.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()

	var wg sync.WaitGroup
	sem := make(chan struct{}, concurrency)
	for {
		msg, err := it.Next()
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() == nil {
				it.Stop()
				wg.Wait()
				return err
			}
			break
		}
		if ctx.Err() != nil {
			_ = msg.Nak() // buffered, not started: let another replica take it now
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			handle(hctx, msg)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drain):
		hcancel()
		<-done
	}
	return nil
}
