// Package loadtest floods retrigger with events and measures it: the load
// generator behind `go run ./scripts/loadgen`. Run inserts events (as fast
// as possible or at a fixed rate) into the whole pipeline running in this
// process on the embedded defaults, or into an external deployment; a
// handler of its own fails a chosen share of runs; it waits until every
// event is terminal or the timeout expires, then reports throughput,
// latency percentiles, retry lateness and outcomes, and checks the
// invariants of docs/DESIGN.md (none lost, none double-counted, none left
// non-terminal) with Checker. Its flow modes (Options.Outage, Keys,
// RateLimit, Breaker) drive flow control and report in Result.Flow what
// the handler saw of it: the calls to a dead partner and the breaker's
// trip, the runs of one key at once and their order, the rate of starts.
// Ceiling measures the embedded engine alone on
// the same write pattern, so a report can say how much of the gap is
// retrigger's and how much the engine's.
package loadtest
