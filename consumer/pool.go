package consumer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// consume runs pull until ctx ends, starting it again with backoff when the
// message iterator fails (missed heartbeats during a long NATS outage, a
// consumer deleted by an operator): a replica keeps working through what
// it can survive, and says so.
func consume(ctx context.Context, log zerolog.Logger, open func(context.Context) (jetstream.Consumer, error), concurrency int, drain time.Duration, handle func(context.Context, jetstream.Msg)) error {
	cons, err := open(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err // a bad configuration: say so at start
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = 100*time.Millisecond, 10*time.Second, 0
	for {
		if cons != nil {
			err = pull(ctx, cons, concurrency, drain, handle)
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := bo.NextBackOff()
		log.Warn().Err(err).Dur("retry_in", wait).Msg("pulling messages failed; pulling again")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		cons, err = open(ctx) // it may have been deleted
	}
}

// pull delivers the messages of cons to handle, at most concurrency at a
// time, until ctx ends. Then it stops pulling, hands buffered messages back
// (nak) and waits up to drain for the handlers in flight; after that it
// cancels their context and waits for them to return.
func pull(ctx context.Context, cons jetstream.Consumer, concurrency int, drain time.Duration, handle func(context.Context, jetstream.Msg)) error {
	// A 5s pull expiry (2.5s heartbeats) notices a lost pull request, such
	// as one to a deleted consumer, within 5s instead of 30s.
	it, err := cons.Messages(jetstream.PullMaxMessages(concurrency), jetstream.PullExpiry(5*time.Second))
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
