package pipeline

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/consumer/handlers"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/eventstore"
	"github.com/retrigger/retrigger/shared/flow"
	"github.com/retrigger/retrigger/shared/messaging"
	"github.com/retrigger/retrigger/shared/retry"
)

// partner stands for the system a handler calls: it fails while down,
// and records each call, and how many calls overlap.
type partner struct {
	down    atomic.Bool
	latency time.Duration
	mu      sync.Mutex
	calls   []partnerCall
	running int
	peak    int // the most calls at once since the last resetPeak
}

type partnerCall struct {
	at     time.Time
	id     string
	failed bool
}

func (p *partner) handle(ctx context.Context, ev *consumer.Event) error {
	p.mu.Lock()
	failed := p.down.Load()
	p.calls = append(p.calls, partnerCall{at: time.Now(), id: event.IDString(ev.ID), failed: failed})
	p.running++
	p.peak = max(p.peak, p.running)
	p.mu.Unlock()
	defer func() { p.mu.Lock(); p.running--; p.mu.Unlock() }()
	if p.latency > 0 {
		select {
		case <-time.After(p.latency):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if failed {
		return errors.New("POST https://partner.example/orders: 503 Service Unavailable")
	}
	return nil
}

func (p *partner) snapshot() []partnerCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]partnerCall(nil), p.calls...)
}

func (p *partner) resetPeak() {
	p.mu.Lock()
	p.peak = p.running
	p.mu.Unlock()
}

func (p *partner) peakSince() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
}

func flowStore(b *bundle) *eventstore.Store { return eventstore.New(b.DB, b.Options().Worker.Store) }

// flowOf reads typ's flow control as operators see it.
func flowOf(t *testing.T, b *bundle, typ string) flow.Status {
	t.Helper()
	all, err := flow.Read(context.Background(), flowStore(b), time.Now())
	require.NoError(t, err)
	for _, s := range all {
		if s.Type == typ {
			return s
		}
	}
	return flow.Status{Type: typ, Breaker: flow.Closed}
}

// A partner's outage, with the stock policy and the stock breaker: a
// partner answers 503 for 40 s while 400 events arrive in its first 20 s.
// No event is archived; once the breaker trips the partner sees about one
// call per 10 s of outage (the probes), and no event spends an attempt;
// every event succeeds within 30 s of the partner's recovery.
func TestPartnerOutage(t *testing.T) {
	t.Parallel()
	const (
		events = 400
		outage = 40 * time.Second
	)
	p := &partner{}
	p.down.Store(true)
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Replicas = 2
		o.Worker.Handlers = map[string]consumer.Handler{"partner": p.handle}
		o.Worker.Policies = retry.Policies{} // the stock policy
		o.Worker.Flow = flow.Config{}        // the stock breaker
	})
	start := time.Now()
	recovery := start.Add(outage)
	time.AfterFunc(outage, func() { p.down.Store(false) })

	// The trip, seen as operators see it.
	var tripSeen atomic.Int64
	watch, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for watch.Err() == nil {
			if s, err := flow.Read(watch, flowStore(b), time.Now()); err == nil {
				for _, st := range s {
					if st.Type == "partner" && st.Breaker == flow.Open && tripSeen.Load() == 0 {
						tripSeen.Store(time.Now().UnixNano())
					}
				}
			}
			select {
			case <-watch.Done():
			case <-tick.C:
			}
		}
	}()

	ids := make([]bson.ObjectID, events)
	pace := time.NewTicker(20 * time.Second / events)
	for i := range ids {
		ids[i] = b.insert(t, bson.E{Key: "type", Value: "partner"}, bson.E{Key: "payload", Value: bson.D{{Key: "n", Value: i}}})
		<-pace.C
	}
	pace.Stop()
	for _, id := range ids {
		b.waitStateWithin(t, time.Until(recovery.Add(45*time.Second)), id, event.StateSuccess)
	}
	stopWatch()

	n, err := b.errs().Count(context.Background(), bson.D{})
	require.NoError(t, err)
	require.Zero(t, n, "no event archived")

	calls := p.snapshot()
	trip := time.Unix(0, tripSeen.Load())
	require.False(t, trip.IsZero() || tripSeen.Load() == 0, "the breaker tripped")
	settled := trip.Add(2 * time.Second) // every replica reads it within its refresh (1s)
	var before, during, failed, lastSuccess = 0, 0, 0, time.Time{}
	for _, c := range calls {
		switch {
		case c.at.Before(settled):
			before++
		case c.at.Before(recovery):
			during++
		}
		if c.failed {
			failed++
		} else if c.at.After(lastSuccess) {
			lastSuccess = c.at
		}
	}
	t.Logf("trip at +%s; calls before it settled %d, during the rest of the outage %d (probes), failed %d of %d; last success %s after recovery",
		trip.Sub(start).Round(time.Millisecond), before, during, failed, len(calls), lastSuccess.Sub(recovery).Round(time.Millisecond))
	require.LessOrEqual(t, during, int(outage/(10*time.Second)), "at most one call per 10s of outage once the breaker is open")
	require.LessOrEqual(t, before, 4*flow.DefaultMinRuns, "the trip's runs")
	require.Less(t, lastSuccess.Sub(recovery), 30*time.Second, "every event succeeds within 30s of recovery")

	// No attempt was spent while the breaker held the type: the attempts
	// counted are the failed runs before the trip settled, probes not.
	var attempts int64
	for _, id := range ids {
		attempts += get(t, b.events(), id).Attempts
	}
	require.LessOrEqual(t, attempts, int64(before), "attempts spent: only the runs that tripped the breaker")
	require.Equal(t, int64(failed), attempts+int64(countProbes(calls, settled, recovery)), "a failed probe spends no attempt")
}

func countProbes(calls []partnerCall, from, to time.Time) int {
	n := 0
	for _, c := range calls {
		if c.failed && !c.at.Before(from) && c.at.Before(to) {
			n++
		}
	}
	return n
}

// waitStateWithin waits for the event's state, whatever its attempts.
func (b *bundle) waitStateWithin(t *testing.T, d time.Duration, id bson.ObjectID, want event.State) {
	t.Helper()
	waitFor(t, max(d, time.Second), fmt.Sprintf("event %s in state %s", id.Hex(), want), func() bool {
		ev := get(t, b.events(), id)
		return ev != nil && ev.State == want
	})
}

// fastBreaker trips and probes in tenths of seconds, for tests.
var fastBreaker = flow.Breaker{MinRuns: 10, Ratio: 0.8, Window: 5 * time.Second, Probe: 300 * time.Millisecond, MaxProbe: 600 * time.Millisecond}

// Four replicas share one breaker: once it is open, one probe runs at a
// time across them, a replica that joins obeys it at once, and after the
// probe succeeds the backlog comes out one run at a time first.
func TestBreakerSharedByReplicas(t *testing.T) {
	t.Parallel()
	p := &partner{latency: 20 * time.Millisecond}
	p.down.Store(true)
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Replicas = 4
		o.Worker.Handlers = map[string]consumer.Handler{"partner": p.handle}
		o.Worker.Policies = retry.Policies{Default: retry.Policy{InitialInterval: 200 * time.Millisecond, MaxAttempts: 50}}
		o.Worker.Flow = flow.Config{Breaker: fastBreaker, Refresh: 100 * time.Millisecond}
	})
	var ids []bson.ObjectID
	for i := range 80 {
		ids = append(ids, b.insert(t, bson.E{Key: "type", Value: "partner"}, bson.E{Key: "payload", Value: bson.D{{Key: "n", Value: i}}}))
	}
	waitFor(t, 20*time.Second, "the breaker open", func() bool { return flowOf(t, b, "partner").Breaker == flow.Open })
	// Every replica knows within its refresh; then only probes run.
	waitFor(t, 5*time.Second, "every replica holding the type", func() bool {
		for _, w := range b.Workers() {
			if mode, _, _ := w.Flow().Pulling("partner"); mode == flow.Pull {
				return false
			}
		}
		return true
	})
	waitFor(t, 5*time.Second, "the runs admitted before the trip ended", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.running == 0
	})
	p.resetPeak()
	from := len(p.snapshot())
	require.NoError(t, b.StartWorker(), "a replica that joins now obeys the open breaker")
	probesSeen := func() int { return len(p.snapshot()) - from }
	openedAt := time.Now()
	waitFor(t, 20*time.Second, "six probes", func() bool { return probesSeen() >= 6 })
	elapsed := time.Since(openedAt)
	require.Equal(t, 1, p.peakSince(), "one probe at a time across five replicas")
	require.LessOrEqual(t, probesSeen(), int(elapsed/fastBreaker.Probe)+2, "one probe per interval, not one per replica")

	p.down.Store(false)
	recovered := time.Now()
	waitFor(t, 20*time.Second, "the breaker recovering", func() bool { return flowOf(t, b, "partner").Breaker != flow.Open })
	p.resetPeak()
	for _, id := range ids {
		b.waitStateWithin(t, 60*time.Second, id, event.StateSuccess)
	}
	if time.Since(recovered) < flow.DefaultWave {
		require.Equal(t, 1, p.peakSince(), "the first wave: one run at a time across the replicas")
	}
	st := flowOf(t, b, "partner")
	require.GreaterOrEqual(t, st.Trips, int64(1))
	require.Contains(t, st.Reason, "503")
}

// A type paused by hand holds no capacity: its messages stay in the stream,
// other types run; resumed, its events run. A pause with an end lifts by
// itself.
func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	other := newRecorder(nil)
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Worker.Handlers["other"] = other.handle
	})
	for _, w := range b.Workers() {
		<-w.Flow().Ready()
	}
	st := flowStore(b)
	require.NoError(t, flow.Pause(context.Background(), st, "job", time.Time{}, "partner maintenance", "ops@test", time.Now()))
	waitFor(t, 10*time.Second, "every replica holding job", func() bool {
		for _, w := range b.Workers() {
			if mode, _, _ := w.Flow().Pulling("job"); mode != flow.Hold {
				return false
			}
		}
		return true
	})
	var held []bson.ObjectID
	for range 20 {
		held = append(held, b.insertJob(t))
	}
	ctl := b.insert(t, bson.E{Key: "type", Value: "other"})
	b.waitState(t, ctl, event.StateSuccess, 0)
	js, err := jetstream.New(b.Conn)
	require.NoError(t, err)
	names := messaging.DefaultNames()
	cons, err := js.Consumer(context.Background(), names.EventsStream(), names.WorkersConsumer("job"))
	require.NoError(t, err)
	waitFor(t, 10*time.Second, "job's 20 messages waiting in the stream, none out", func() bool {
		info, err := cons.Info(context.Background())
		require.NoError(t, err)
		return info.NumPending == 20 && info.NumAckPending == 0
	})
	for _, id := range held {
		require.Empty(t, b.rec.callTimes(id.Hex()), "a paused type runs nothing")
		require.Equal(t, event.StateNew, get(t, b.events(), id).State)
	}
	status := flowOf(t, b, "job")
	require.NotNil(t, status.Pause)
	require.Equal(t, "ops@test", status.Pause.By)
	require.Equal(t, "partner maintenance", status.Pause.Reason)

	lifted, err := flow.Resume(context.Background(), st, "job", time.Now())
	require.NoError(t, err)
	require.True(t, lifted)
	for _, id := range held {
		b.waitState(t, id, event.StateSuccess, 0)
	}
	lifted, err = flow.Resume(context.Background(), st, "job", time.Now())
	require.NoError(t, err)
	require.False(t, lifted, "nothing left to resume")

	until := time.Now().Add(1500 * time.Millisecond)
	require.NoError(t, flow.Pause(context.Background(), st, "job", until, "a short one", "ops", time.Now()))
	waitFor(t, 10*time.Second, "every replica holding job", func() bool {
		for _, w := range b.Workers() {
			if mode, _, _ := w.Flow().Pulling("job"); mode != flow.Hold {
				return false
			}
		}
		return true
	})
	late := b.insertJob(t)
	b.waitState(t, late, event.StateSuccess, 0)
	require.False(t, b.rec.callTimes(late.Hex())[0].Before(until), "not before the pause's end")
	require.Error(t, flow.Pause(context.Background(), st, "job", time.Now().Add(-time.Minute), "", "ops", time.Now()), "an end in the past")
}

// A partner's 429 with Retry-After pauses the whole type for that long,
// across the replicas, not only the event that got it.
func TestRetryAfterPausesTheType(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		times []time.Time
		first atomic.Bool
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		if first.CompareAndSwap(false, true) {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	hs, err := handlers.ParseSpec("hook=http:"+srv.URL, handlers.SpecOptions{})
	require.NoError(t, err)
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Worker.Handlers["hook"] = hs["hook"]
	})
	a := b.insert(t, bson.E{Key: "type", Value: "hook"})
	waitFor(t, 10*time.Second, "the 429", func() bool { mu.Lock(); defer mu.Unlock(); return len(times) == 1 })
	mu.Lock()
	throttled := times[0]
	mu.Unlock()
	waitFor(t, 10*time.Second, "the type paused", func() bool {
		s := flowOf(t, b, "hook")
		return s.Pause != nil && s.Pause.Source == flow.SourceRetryAfter
	})
	// The replica that got the 429 holds the type at once, the others
	// within their refresh (1s).
	waitFor(t, 10*time.Second, "every replica holding hook", func() bool {
		for _, w := range b.Workers() {
			if mode, _, _ := w.Flow().Pulling("hook"); mode != flow.Hold {
				return false
			}
		}
		return true
	})
	var rest []bson.ObjectID
	for range 5 {
		rest = append(rest, b.insert(t, bson.E{Key: "type", Value: "hook"}))
	}
	for _, id := range append(rest, a) {
		b.waitStateWithin(t, 20*time.Second, id, event.StateSuccess)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, times, 7)
	for _, at := range times[1:] {
		require.False(t, at.Before(throttled.Add(1900*time.Millisecond)), "no call within the Retry-After: %s", at.Sub(throttled))
	}
	require.EqualValues(t, 1, get(t, b.events(), a).Attempts, "the 429 spent its event's attempt")
}

// A rate limit holds across four replicas: over the run the handler sees
// the limit within 10%, and never more than limit+burst in any second.
func TestRateLimitAcrossReplicas(t *testing.T) {
	// Not parallel: the rate seen depends on the replicas getting a turn's
	// work done within it, which the package's other loads (the keys at
	// scale above all) would take from them on a machine of 2 cores.
	const (
		rate   = 10.0
		burst  = 3
		events = 200
	)
	p := &partner{}
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Replicas = 4
		o.Worker.Handlers = map[string]consumer.Handler{"partner": p.handle}
		o.Worker.Flow = flow.Config{Rates: map[string]flow.Rate{"partner": {PerSecond: rate, Burst: burst}}}
	})
	var ids []bson.ObjectID
	for range events {
		ids = append(ids, b.insert(t, bson.E{Key: "type", Value: "partner"}))
	}
	for _, id := range ids {
		b.waitStateWithin(t, 90*time.Second, id, event.StateSuccess)
	}
	calls := p.snapshot()
	require.Len(t, calls, events)
	sort.Slice(calls, func(i, j int) bool { return calls[i].at.Before(calls[j].at) })
	worst := 0
	for i := range calls {
		n := sort.Search(len(calls), func(j int) bool { return !calls[j].at.Before(calls[i].at.Add(time.Second)) }) - i
		worst = max(worst, n)
	}
	span := calls[len(calls)-1].at.Sub(calls[0].at)
	seen := float64(events-burst) / span.Seconds()
	t.Logf("%d runs in %s: %.2f/s (limit %v/s), at most %d in any second (limit+burst %d)", events, span.Round(time.Millisecond), seen, rate, worst, int(rate)+burst)
	require.InDelta(t, rate, seen, rate*0.1, "the rate seen stays within 10%% of the limit")
	require.LessOrEqual(t, worst, int(rate)+burst, "never above limit+burst in any second")
}

// Keys: four replicas, 800 events over 30 keys with 20% failures. An
// ordered key runs one at a time, its successes in insertion order, a
// failed event holding the events after it; a key of concurrency 2 never
// runs more than 2 at once. Events without the key run as keys of their
// own, and a key of a megabyte is a key like any other.
func TestKeysAcrossReplicas(t *testing.T) {
	t.Parallel()
	const (
		ledgers   = 600 // over 20 keys
		customers = 200 // over 10 keys
	)
	t0 := time.Now()
	var (
		mu       sync.Mutex
		running  = map[string]int{} // key -> runs now
		overlaps []string
		peak     = map[string]int{}
		order    = map[string][]string{} // ordered key -> ids in success order
		calls    = map[string]int{}
	)
	failing := func(id string, n int) bool {
		h := fnv.New32a()
		_, _ = h.Write([]byte(id + "/" + strconv.Itoa(n)))
		return h.Sum32()%5 == 0 // 20% of runs fail, whatever the replica
	}
	handler := func(limit int, work time.Duration) consumer.Handler {
		return func(ctx context.Context, ev *consumer.Event) error {
			id := event.IDString(ev.ID)
			k := ev.Type + "/" + keyString(ev.Payload.Lookup("k"))
			mu.Lock()
			running[k]++
			if running[k] > limit && !strings.HasSuffix(k, "/none") {
				overlaps = append(overlaps, fmt.Sprintf("%s: %d at once", k, running[k]))
			}
			peak[k] = max(peak[k], running[k])
			calls[id]++
			n := calls[id]
			mu.Unlock()
			select {
			case <-time.After(work):
			case <-ctx.Done():
			}
			fail := failing(id, n)
			mu.Lock()
			running[k]--
			if !fail && ev.Type == "ledger" {
				order[k] = append(order[k], id)
			}
			mu.Unlock()
			if fail {
				return errors.New("partner: 502")
			}
			return nil
		}
	}
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Replicas = 4
		o.Worker.Handlers = map[string]consumer.Handler{"ledger": handler(1, 2*time.Millisecond), "customer": handler(2, 100*time.Millisecond)}
		o.Worker.Policies = retry.Policies{Default: retry.Policy{InitialInterval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond, MaxAttempts: 100}}
		o.Worker.Flow = flow.Config{Keys: map[string]flow.Key{
			"ledger":   {Path: "payload.k", Ordered: true},
			"customer": {Path: "payload.k", Concurrency: 2},
		}}
		o.Producer.Sweeper.Interval = time.Second
	})
	huge := strings.Repeat("k", 1<<20)
	want := map[string][]string{} // ordered key -> ids in insertion order
	var (
		all   []bson.ObjectID
		batch []any
	)
	flush := func() {
		require.NoError(t, b.events().InsertMany(context.Background(), batch)) // in order
		batch = batch[:0]
	}
	for i := range ledgers {
		for _, typ := range []string{"ledger", "customer"} {
			keys := 20
			if typ == "customer" {
				if i >= customers {
					continue
				}
				keys = 10
			}
			var k any = fmt.Sprintf("k%d", i%keys)
			switch {
			case i%97 == 0:
				k = nil // no key: a key of its own
			case i%250 == 1:
				k = huge
			}
			payload := bson.D{{Key: "n", Value: i}}
			if k != nil {
				payload = append(payload, bson.E{Key: "k", Value: k})
			}
			id := bson.NewObjectID()
			batch = append(batch, bson.D{{Key: "_id", Value: id}, {Key: "type", Value: typ}, {Key: "payload", Value: payload}})
			all = append(all, id)
			if typ == "ledger" && k != nil {
				kk := typ + "/" + keyString(mustLookup(t, payload, "k"))
				want[kk] = append(want[kk], id.Hex())
			}
		}
		if len(batch) >= 100 || i == ledgers-1 {
			flush()
		}
	}
	for _, id := range all {
		b.waitStateWithin(t, 3*time.Minute, id, event.StateSuccess)
	}
	t.Logf("%d events over 30 keys of two types ran in %s", len(all), time.Since(t0).Round(time.Millisecond))
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, overlaps, "no key runs beyond its limit")
	for k, ids := range want {
		require.Equal(t, ids, order[k], "key %s: successes in insertion order", short(k))
	}
	twice := 0
	for k, n := range peak {
		if strings.HasPrefix(k, "customer/") && n == 2 {
			twice++
		}
	}
	require.Positive(t, twice, "a key of concurrency 2 does run two at once")
}

func keyString(v bson.RawValue) string {
	if v.Type == 0 {
		return "none"
	}
	if s, ok := v.StringValueOK(); ok {
		return s
	}
	return v.String()
}

func mustLookup(t *testing.T, d bson.D, key string) bson.RawValue {
	raw, err := bson.Marshal(d)
	require.NoError(t, err)
	return bson.Raw(raw).Lookup(key)
}

func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// A new event inserted with a nextAttemptAt ahead runs then, not at once;
// one with a nextAttemptAt behind runs at once.
func TestDelayedFirstRun(t *testing.T) {
	t.Parallel()
	b := setup(t, newRecorder(nil), nil)
	at := time.Now().Add(2 * time.Second)
	delayed := b.insertJob(t, bson.E{Key: "nextAttemptAt", Value: at})
	past := b.insertJob(t, bson.E{Key: "nextAttemptAt", Value: time.Now().Add(-time.Hour)})
	b.waitState(t, past, event.StateSuccess, 0)
	require.True(t, time.Now().Before(at), "the event due in the past ran before the delayed one was due")
	require.Empty(t, b.rec.callTimes(delayed.Hex()))
	b.waitState(t, delayed, event.StateSuccess, 0)
	require.False(t, b.rec.callTimes(delayed.Hex())[0].Before(at.Truncate(time.Millisecond)), "not before its nextAttemptAt")
}

// A replica that dies holding a key (its run under way, the key's slot
// taken, the key's next event parked behind it) stops the key only until
// its bound (its handler timeout plus the ack wait): the surviving
// replicas take the run over (counting the crash, which its outcome
// clears), the key's waiting events are woken, and an ordered key's
// events still run one at a time, in insertion order; another key never
// waited.
func TestKeyHolderCrashes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		key  flow.Key
	}{
		{"ordered", flow.Key{Path: "payload.k", Ordered: true}},
		{"concurrency 1", flow.Key{Path: "payload.k", Concurrency: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var second bson.ObjectID
			rec := newRecorder(func(id string, call int) error {
				if id == second.Hex() && call == 1 {
					return errors.New("partner: 502") // a failure holds the key too
				}
				return nil
			})
			b := setup(t, rec, func(o *Options) {
				o.Replicas = -1
				o.Worker.AckWait = 2 * time.Second
				o.Worker.Flow = flow.Config{Keys: map[string]flow.Key{"job": tt.key}}
			})
			d := startDoomedWith(t, b, 4*time.Second) // its slot outlives its lease: 6 s against 2 s (and a grace of 1 s)
			var ids []bson.ObjectID
			for i := range 5 {
				ids = append(ids, b.insert(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "payload", Value: bson.D{{Key: "k", Value: "acct-1"}, {Key: "n", Value: i}}}))
			}
			second = ids[1]
			d.waitStarted(t)
			// One of the key's events runs on the doomed replica (the first,
			// when ordered); another waits, parked, behind it.
			waitFor(t, 10*time.Second, "an event of the key parked behind the one running", func() bool {
				for _, id := range ids {
					if ev := get(t, b.events(), id); ev != nil && !ev.ParkedAt.IsZero() {
						return true
					}
				}
				return false
			})
			d.crash()

			other := b.insert(t, bson.E{Key: "type", Value: "job"}, bson.E{Key: "payload", Value: bson.D{{Key: "k", Value: "acct-2"}}})
			require.NoError(t, b.StartWorker())
			require.NoError(t, b.StartWorker())
			b.waitStateWithin(t, 10*time.Second, other, event.StateSuccess)
			var prevEnd time.Time
			for i, id := range ids {
				b.waitStateWithin(t, 20*time.Second, id, event.StateSuccess)
				ev := get(t, b.events(), id)
				calls := rec.callTimes(id.Hex())
				require.NotEmpty(t, calls, "event %d ran on a surviving replica", i)
				if tt.key.Ordered {
					require.False(t, calls[0].Before(prevEnd), "event %d of the key started before event %d ended", i, i-1)
					prevEnd = calls[len(calls)-1]
				}
				if i == 0 && tt.key.Ordered {
					require.Len(t, calls, 1, "the dead replica's run was taken over once")
				}
				require.Zero(t, ev.Crashes, "the outcome clears the crash count")
			}
			require.Len(t, rec.callTimes(ids[1].Hex()), 2, "the failed event ran again")
		})
	}
}

// A replica that dies in the middle of the breaker's probe does not stop
// the type for good: the probe's lease runs out (the dead replica's handler
// timeout plus the ack wait), another replica probes,
// and once the partner answers every event succeeds. The probe that never
// finished is a crash of its event's run, and the event's outcome clears it.
func TestProbeHolderCrashes(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	down.Store(true)
	rec := newRecorder(func(string, int) error {
		if down.Load() {
			return errors.New("partner: 503")
		}
		return nil
	})
	b := setup(t, rec, func(o *Options) {
		o.Worker.AckWait = 2 * time.Second
		o.Worker.Policies = retry.Policies{Default: retry.Policy{InitialInterval: 100 * time.Millisecond, MaxAttempts: 50}}
		o.Worker.Flow = flow.Config{Breaker: fastBreaker, Refresh: 100 * time.Millisecond}
	})
	var ids []bson.ObjectID
	for range 20 {
		ids = append(ids, b.insertJob(t))
	}
	waitFor(t, 20*time.Second, "the breaker open", func() bool { return flowOf(t, b, "job").Breaker == flow.Open })
	require.NoError(t, b.StopWorkers())

	// The only replica: it takes the next probe and dies in it. The probe
	// is its for its handler timeout plus the ack wait (5 s here).
	d := startDoomedWith(t, b, 3*time.Second)
	d.waitStarted(t)
	waitFor(t, 5*time.Second, "the doomed replica's probe recorded", func() bool {
		fs, err := flowStore(b).LoadFlows(context.Background(), []string{"job"})
		require.NoError(t, err)
		return len(fs) == 1 && fs[0].Breaker.Probe != nil
	})
	d.crash()
	down.Store(false)
	require.NoError(t, b.StartWorker())
	require.NoError(t, b.StartWorker())
	t.Cleanup(func() {
		if t.Failed() {
			fs, _ := flowStore(b).LoadFlows(context.Background(), []string{"job"})
			t.Logf("flow: %+v", fs)
			for _, id := range ids {
				doc, _ := b.events().FindOne(context.Background(), bson.D{{Key: "_id", Value: id}})
				t.Logf("%s", doc)
			}
		}
	})
	for _, id := range ids {
		b.waitStateWithin(t, 30*time.Second, id, event.StateSuccess)
		require.Zero(t, get(t, b.events(), id).Crashes, "an outcome clears the crash count")
	}
	require.NotEqual(t, flow.Open, flowOf(t, b, "job").Breaker)
}

// The backlog of an ordered key found at a producer's first start (events
// inserted before its change stream opened, published by its first sweep,
// some of them by the stream too) runs in insertion order: each such
// message carries the event's creation time as its place, and events
// created in the same millisecond go by _id.
func TestOrderedBacklogAtFirstStart(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		order = map[string][]string{}
	)
	failing := map[string]bool{}
	var fmu sync.Mutex
	rec := newRecorder(func(id string, call int) error {
		fmu.Lock()
		defer fmu.Unlock()
		if failing[id] && call == 1 {
			return errors.New("partner: 502") // holds its key until it succeeds
		}
		return nil
	})
	o := Options{Memory: true, Replicas: 2}
	o.Worker.Handlers = map[string]consumer.Handler{"ledger": func(ctx context.Context, ev *consumer.Event) error {
		if err := rec.handle(ctx, ev); err != nil {
			return err
		}
		mu.Lock()
		k := keyString(ev.Payload.Lookup("k"))
		order[k] = append(order[k], event.IDString(ev.ID))
		mu.Unlock()
		return nil
	}}
	o.Worker.Policies = fastPolicy(5)
	o.Worker.Flow = flow.Config{Keys: map[string]flow.Key{"ledger": {Path: "payload.k", Ordered: true}}}
	o.Producer.Sweeper.Interval = 200 * time.Millisecond
	p, err := Open(context.Background(), o)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	b := &bundle{Pipeline: p, rec: rec}

	want := map[string][]string{}
	created := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	insert := func(i int) {
		if i%4 == 0 {
			created = created.Add(time.Millisecond) // four events to a millisecond
		}
		k := fmt.Sprintf("acct-%d", i%3)
		id := bson.NewObjectID()
		fmu.Lock()
		failing[id.Hex()] = i%7 == 0
		fmu.Unlock()
		want[k] = append(want[k], id.Hex())
		require.NoError(t, b.events().InsertOne(context.Background(), bson.D{{Key: "_id", Value: id}, {Key: "type", Value: "ledger"},
			{Key: "payload", Value: bson.D{{Key: "k", Value: k}, {Key: "n", Value: i}}}, {Key: "createdAt", Value: created}}))
	}
	for i := range 40 {
		insert(i)
	}
	require.NoError(t, p.StartWorker())
	require.NoError(t, p.StartWorker())
	require.NoError(t, p.StartArchiver())
	// The producer starts while the backlog still grows: the events
	// inserted now reach the replicas by its stream and by its first sweep.
	require.NoError(t, p.StartProducer())
	for i := 40; i < 80; i++ {
		insert(i)
	}
	for _, ids := range want {
		for _, id := range ids {
			oid, err := bson.ObjectIDFromHex(id)
			require.NoError(t, err)
			b.waitStateWithin(t, 30*time.Second, oid, event.StateSuccess)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for k, ids := range want {
		require.Equal(t, ids, order[k], "key %s: successes in insertion order", k)
	}
}

// Ordered keys at scale: 10,000 events over 100 keys on 4 replicas, a
// fifth of the runs failing. No two runs of one key overlap, and each
// key's successes follow insertion order. Succeeded events are deleted
// a second after success, as a deployment with retention does, so that
// the embedded engine's scans stay on the live events.
func TestOrderedKeysAtScale(t *testing.T) {
	t.Parallel()
	const (
		total = 10000
		keys  = 100
	)
	var (
		mu        sync.Mutex
		running   = map[string]int{}
		overlaps  []string
		order     = map[string][]string{}
		calls     = map[string]int{}
		succeeded int
	)
	handler := func(ctx context.Context, ev *consumer.Event) error {
		id := event.IDString(ev.ID)
		k := keyString(ev.Payload.Lookup("k"))
		mu.Lock()
		running[k]++
		if running[k] > 1 {
			overlaps = append(overlaps, fmt.Sprintf("%s: %d at once", k, running[k]))
		}
		calls[id]++
		h := fnv.New32a()
		_, _ = h.Write([]byte(id + "/" + strconv.Itoa(calls[id])))
		fail := h.Sum32()%5 == 0 // 20% of runs fail, whatever the replica
		mu.Unlock()
		select { // a run takes a moment, in which another of its key could start
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
		}
		mu.Lock()
		running[k]--
		if !fail {
			order[k] = append(order[k], id)
			succeeded++
		}
		mu.Unlock()
		if fail {
			return errors.New("partner: 502")
		}
		return nil
	}
	b := setup(t, newRecorder(nil), func(o *Options) {
		o.Replicas = 4
		o.Worker.Handlers = map[string]consumer.Handler{"ledger": handler}
		o.Worker.Policies = retry.Policies{Default: retry.Policy{InitialInterval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond, MaxAttempts: 100}}
		o.Worker.Flow = flow.Config{Keys: map[string]flow.Key{"ledger": {Path: "payload.k", Ordered: true}}}
		o.Producer.Retention.After, o.Producer.Retention.Interval = time.Second, time.Second
		o.Producer.Sweeper.Interval = time.Second
	})
	start := time.Now()
	want := map[string][]string{}
	batch := make([]any, 0, 500)
	for i := range total {
		k := fmt.Sprintf("acct-%d", i%keys)
		id := bson.NewObjectID()
		batch = append(batch, bson.D{{Key: "_id", Value: id}, {Key: "type", Value: "ledger"}, {Key: "payload", Value: bson.D{{Key: "k", Value: k}, {Key: "n", Value: i}}}})
		want[k] = append(want[k], id.Hex())
		if len(batch) == cap(batch) {
			require.NoError(t, b.events().InsertMany(context.Background(), batch)) // in order
			batch = batch[:0]
		}
	}
	waitFor(t, 5*time.Minute, "every event succeeded", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return succeeded >= total
	})
	t.Logf("%d events over %d ordered keys on 4 replicas in %s", total, keys, time.Since(start).Round(time.Millisecond))
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, overlaps, "no key runs two at once")
	require.Equal(t, total, succeeded, "each event succeeded once")
	for k, ids := range want {
		require.Equal(t, ids, order[k], "key %s: successes in insertion order", k)
	}
}
