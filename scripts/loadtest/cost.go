package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sort"
	"strings"

	"github.com/google/pprof/profile"
)

// The parts a cost is split into. Own is retrigger's code: the producer,
// the consumer's worker and the archiver, with what they call in the
// MongoDB driver's bson package; the rest is what they run on.
const (
	PartProducer = "producer"
	PartWorker   = "worker"
	PartArchiver = "archiver"
	PartEngine   = "storage engine"
	PartClient   = "NATS client"
	PartServer   = "nats-server"
	PartHandler  = "handler"
	PartLoad     = "load generator"
	PartRuntime  = "runtime (GC, scheduler)"
	PartOther    = "other"
)

// ownParts are retrigger's own.
var ownParts = []string{PartProducer, PartWorker, PartArchiver}

// CostResult is the CPU and the allocations of one load, per event and by
// part.
type CostResult struct {
	Events    int        `json:"events"`
	FailFirst int64      `json:"fail_first"`
	Parts     []CostPart `json:"parts"`
	// Own sums the producer, the worker and the archiver.
	Own CostPart `json:"own"`
	// Load is the load's own result (throughput, checks).
	Load Result `json:"load"`
	// RoundTrips are counted in a third run of the same load, so that
	// counting costs the other two nothing.
	RoundTrips *RoundTrips `json:"round_trips"`
}

// CostPart is one part's cost per event.
type CostPart struct {
	Part      string  `json:"part"`
	CPUMicros float64 `json:"cpu_us_per_event"`
	Allocs    float64 `json:"allocs_per_event"`
	Bytes     float64 `json:"bytes_per_event"`
}

// Cost runs the load o three times: with a CPU profile, with every
// allocation recorded (runtime.MemProfileRate 1), and with its round
// trips counted (Options.RoundTrips). It splits the first two by part:
// each sample goes to the engine, the NATS client, the nats-server, or
// the load generator's handler or transition callback when the innermost
// of those frames comes before any of retrigger's own, and otherwise to the component whose code it is in (the
// pprof label the load generator sets on each component's goroutines;
// for allocations, which carry no labels, the component whose code is on
// the stack). Costs are per terminal event, periodic work (checkpoints,
// sweeps, retention) included.
func Cost(ctx context.Context, o Options) (CostResult, error) {
	out := CostResult{Events: o.withDefaults().Count, FailFirst: o.FailFirst}
	// Two runs of the same load: recording every allocation slows the
	// program down many times, so the CPU is measured without it.
	var cpu, before, after bytes.Buffer
	run := func(o Options) (Result, error) {
		res, err := Run(ctx, o)
		if err == nil && !res.Invariants.OK {
			err = fmt.Errorf("the load failed its checks: %v", res.Invariants.Violations)
		}
		return res, err
	}
	co := o
	co.CPUProfile = &cpu
	res, err := run(co)
	out.Load = res
	if err != nil {
		return out, err
	}
	ao := o
	ao.AllocsAtStart, ao.HeapProfile = &before, &after
	rate := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	_, err = run(ao)
	runtime.MemProfileRate = rate
	if err != nil {
		return out, err
	}
	to := o
	to.RoundTrips = true
	tr, err := run(to)
	if err != nil {
		return out, err
	}
	out.RoundTrips = tr.RoundTrips
	parts := map[string]*CostPart{}
	part := func(name string) *CostPart {
		if parts[name] == nil {
			parts[name] = &CostPart{Part: name}
		}
		return parts[name]
	}
	cp, err := profile.Parse(&cpu)
	if err != nil {
		return out, fmt.Errorf("reading the CPU profile: %w", err)
	}
	ns := sampleIndex(cp, "cpu", "nanoseconds")
	for _, s := range cp.Sample {
		part(classify(s, label(s))).CPUMicros += float64(s.Value[ns]) / 1e3
	}
	a0, err := profile.Parse(&before)
	if err != nil {
		return out, fmt.Errorf("reading the allocation profile: %w", err)
	}
	a1, err := profile.Parse(&after)
	if err != nil {
		return out, fmt.Errorf("reading the allocation profile: %w", err)
	}
	a0.Scale(-1)
	diff, err := profile.Merge([]*profile.Profile{a1, a0})
	if err != nil {
		return out, fmt.Errorf("subtracting the allocation profiles: %w", err)
	}
	objects, space := sampleIndex(diff, "alloc_objects", "count"), sampleIndex(diff, "alloc_space", "bytes")
	for _, s := range diff.Sample {
		p := part(classify(s, ""))
		p.Allocs += float64(s.Value[objects])
		p.Bytes += float64(s.Value[space])
	}
	n := float64(out.Events)
	for _, p := range parts {
		p.CPUMicros, p.Allocs, p.Bytes = p.CPUMicros/n, p.Allocs/n, p.Bytes/n
		out.Parts = append(out.Parts, *p)
	}
	sort.Slice(out.Parts, func(i, j int) bool { return out.Parts[i].CPUMicros > out.Parts[j].CPUMicros })
	out.Own.Part = "retrigger's own (producer + worker + archiver)"
	for _, name := range ownParts {
		if p := parts[name]; p != nil {
			out.Own.CPUMicros += p.CPUMicros
			out.Own.Allocs += p.Allocs
			out.Own.Bytes += p.Bytes
		}
	}
	return out, nil
}

func sampleIndex(p *profile.Profile, typ, unit string) int {
	for i, st := range p.SampleType {
		if st.Type == typ && st.Unit == unit {
			return i
		}
	}
	return 0
}

func label(s *profile.Sample) string {
	if v := s.Label["component"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// classify names the part a sample's cost belongs to; component is its
// pprof label ("" when it has none).
func classify(s *profile.Sample, component string) string {
	var funcs []string // innermost first
	for _, loc := range s.Location {
		for _, l := range loc.Line {
			if l.Function != nil {
				funcs = append(funcs, l.Function.Name)
			}
		}
	}
	for i, fn := range funcs {
		if p := dependency(fn); p != "" {
			return p
		}
		if strings.HasPrefix(fn, loadPrefix) {
			// The load generator's handlers and transition callback, which
			// the components call: what they call is theirs too.
			for _, outer := range funcs[i:] {
				switch {
				case !strings.HasPrefix(outer, loadPrefix):
					return PartLoad
				case isHandler(outer):
					return PartHandler
				}
			}
			return PartLoad
		}
		if strings.HasPrefix(fn, retriggerPrefix) {
			break // retrigger's own code, whatever it calls in bson
		}
	}
	switch component {
	case "producer":
		return PartProducer
	case "consumer":
		return PartWorker
	case "archiver":
		return PartArchiver
	case "generator":
		return PartLoad
	case "nats-server":
		return PartServer
	}
	var own []string
	for _, fn := range funcs {
		if strings.HasPrefix(fn, retriggerPrefix) {
			own = append(own, strings.TrimPrefix(fn, retriggerPrefix))
		}
	}
	switch {
	case anyPrefix(own, "consumer.(*Archiver)"):
		return PartArchiver
	case anyPrefix(own, "producer."):
		return PartProducer
	case anyPrefix(own, "consumer."):
		return PartWorker
	case anyPrefix(own, "scripts/"):
		return PartLoad
	case len(own) == 0 && len(funcs) > 0 && strings.HasPrefix(funcs[len(funcs)-1], "runtime."):
		return PartRuntime
	}
	return PartOther
}

const retriggerPrefix = "github.com/retrigger/retrigger/"

// loadPrefix names the load generator's code: its handlers and
// transition callback (the tracker's, the flood's, the flow modes'), which
// run on the components' goroutines.
const loadPrefix = retriggerPrefix + "scripts/loadtest."

// isHandler: fn is a handler of the load (its closures included).
func isHandler(fn string) bool {
	_, m, _ := strings.Cut(strings.TrimPrefix(fn, loadPrefix), ").")
	return m == "handle" || strings.HasPrefix(m, "handle.")
}

// dependency names the part of a function that is not retrigger's own
// ("": retrigger's, or a library it calls).
func dependency(fn string) string {
	switch {
	case strings.HasPrefix(fn, "github.com/256dpi/lungo"), strings.HasPrefix(fn, retriggerPrefix+"shared/store/embedded"):
		return PartEngine // the adapter and the engine (shared/store/embedded/internal/engine) too
	case strings.HasPrefix(fn, "github.com/nats-io/nats-server/"):
		return PartServer
	case strings.HasPrefix(fn, "github.com/nats-io/nats.go"), strings.HasPrefix(fn, "github.com/nats-io/nats%2ego"):
		return PartClient
	}
	return ""
}

func anyPrefix(fns []string, prefix string) bool {
	for _, fn := range fns {
		if strings.HasPrefix(fn, prefix) {
			return true
		}
	}
	return false
}
