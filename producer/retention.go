package producer

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/health"
)

// Retention deletes succeeded events some time after they succeeded, in
// bounded batches, keeping the events collection small.
type Retention struct {
	cfg   RetentionConfig
	log   zerolog.Logger
	store *eventstore.Store
	stats *Stats
	now   func() time.Time
	loops *health.Health
}

// Run deletes every Interval until ctx ends. It does nothing when
// RetentionConfig.After is 0.
func (r *Retention) Run(ctx context.Context) error {
	if r.cfg.After <= 0 {
		return nil
	}
	ticker := time.NewTicker(r.cfg.Interval)
	defer ticker.Stop()
	beat := r.loops.Loop("producer retention", r.cfg.Interval+stuckAfter)
	defer beat.Done()
	for {
		beat.Beat()
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		if _, err := r.RetireOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn().Err(err).Msg("deleting succeeded events past retention")
		}
	}
}

// RetireOnce deletes every succeeded event past retention, batch by batch,
// and says how many.
func (r *Retention) RetireOnce(ctx context.Context) (int64, error) {
	var total int64
	before := r.now().Add(-r.cfg.After)
	for ctx.Err() == nil {
		n, err := r.store.Retire(ctx, before, r.cfg.Batch)
		total += n
		r.stats.Retired.Add(n)
		if err != nil || n < int64(r.cfg.Batch) {
			return total, err
		}
	}
	return total, ctx.Err()
}
