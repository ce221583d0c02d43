// Package loadtest floods retrigger with events and measures it: the load
// generator behind `go run ./scripts/loadgen`. Run inserts events (as fast
// as possible or at a fixed rate) into the whole pipeline running in this
// process on the embedded defaults, or into an external deployment; a
// handler of its own fails a chosen share of runs; it waits until every
// event is terminal or the timeout expires, then reports throughput,
// latency percentiles, retry lateness and outcomes, and checks the
// invariants of docs/DESIGN.md (none lost, none double-counted, none left
// non-terminal) with Checker. Ceiling measures the embedded engine alone on
// the same write pattern, so a report can say how much of the gap is
// retrigger's and how much the engine's.
package loadtest
