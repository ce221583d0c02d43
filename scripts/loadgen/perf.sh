#!/bin/sh
# Reproduces every figure of docs/PERFORMANCE.md. Run from the repository
# root: sh scripts/loadgen/perf.sh [output directory]. It takes about 50
# minutes on 2 cores and writes the load generator's JSON results (one
# object a line), the profiles and the benchmark output to the directory
# (default ./perf-results). Keep the machine otherwise idle: the JSON
# records the load average before and after each run.
set -eu
OUT=${1:-perf-results}
mkdir -p "$OUT"
go build -o "$OUT/loadgen" ./scripts/loadgen
LOADGEN="$OUT/loadgen"

# 1, 2, 4 and 6: flood, 0% and 20% failures, 1, 2 and 4 replicas, each with
# the engine ceiling measured right after it in the same process. Three
# rounds, interleaved, so drift on the machine spreads over every setting.
for round in 1 2 3; do
	for failure in 0 0.2; do
		for replicas in 1 2 4; do
			"$LOADGEN" -count 20000 -failure-rate "$failure" -replicas "$replicas" -ceiling -json -quiet >>"$OUT/flood.jsonl" || echo "run failed: round $round, failure $failure, replicas $replicas" >&2
		done
	done
done

# The embedded engine (issue 21): durable (-storage file, the local run's)
# against in memory, 0% and 20% failures, three rounds interleaved; and the
# durable engine's latency at a fixed 200 events/s.
for round in 1 2 3; do
	for failure in 0 0.2; do
		for storage in file memory; do
			"$LOADGEN" -storage "$storage" -count 2000 -failure-rate "$failure" -replicas 2 -timeout 10m -json -quiet >>"$OUT/storage.jsonl" || echo "run failed: round $round, $storage, failure $failure" >&2
		done
	done
done
"$LOADGEN" -storage file -rate 200 -count 4000 -json -quiet >>"$OUT/rate200.jsonl" || echo "run failed: rate 200, file" >&2
# ... with concurrent inserters, whose durable inserts share a flush.
for inserters in 4 16; do
	for storage in file memory; do
		"$LOADGEN" -storage "$storage" -count 2000 -inserters "$inserters" -json -quiet >>"$OUT/storage.jsonl" || echo "run failed: $storage, $inserters inserters" >&2
	done
done

# 3 and 4: latency and retry lateness at a fixed 200 events/s.
for failure in 0 0.2; do
	"$LOADGEN" -count 12000 -rate 200 -failure-rate "$failure" -json -quiet >>"$OUT/rate200.jsonl" || echo "run failed: rate 200, failure $failure" >&2
done

# 6: the idle baseline of the same process (one event), for the peak RSS.
"$LOADGEN" -count 1 -json -quiet >"$OUT/idle.json" || true

# Where the time goes: CPU profiles of the pipeline (split by component:
# go tool pprof -tags) and of the ceiling run, and a heap profile at the end
# of the load.
"$LOADGEN" -count 20000 -ceiling -cpuprofile "$OUT/load.cpu" -ceiling-cpuprofile "$OUT/ceiling.cpu" -memprofile "$OUT/load.heap" -json -quiet >"$OUT/profile.json" || true

# Waiting costs nothing: the start delay of events while 1,000 others sit
# in a one-hour backoff.
"$LOADGEN" -rate 100 -count 2000 -backoff-flood 1000 -json -quiet >"$OUT/backoff.json" || echo "run failed: backoff flood" >&2

# Cost per event by part (CPU µs and allocations): success, one retry,
# archived after 3 failures.
for ff in 0 1 3; do
	"$LOADGEN" -cost -count 10000 -replicas 1 -fail-first "$ff" -json -quiet >>"$OUT/cost.jsonl" || echo "run failed: cost, fail-first $ff" >&2
done

# 11: flow control. A partner down for 40 s with the stock policy, the
# breaker on and off; ordered keys and keys of concurrency 2 with 20%
# failures; a rate limit across 4 replicas for over 60 s, two ways. A flow
# promise seen broken makes a run exit 1: it is reported, not fatal here.
for breaker in on off; do
	"$LOADGEN" -outage 40s -policy stock -count 400 -rate 20 -breaker "$breaker" -json -quiet >>"$OUT/flow.jsonl" || echo "run failed: outage, breaker $breaker" >&2
done
"$LOADGEN" -count 2000 -keys 100 -key-mode ordered -failure-rate 0.2 -replicas 2 -timeout 6m -json -quiet >>"$OUT/flow.jsonl" || echo "run failed: ordered keys" >&2
"$LOADGEN" -count 10000 -keys 100 -key-mode concurrency:2 -handler-latency 20ms -failure-rate 0.2 -replicas 2 -timeout 6m -json -quiet >>"$OUT/flow.jsonl" || echo "run failed: keys of concurrency 2" >&2
"$LOADGEN" -count 3300 -rate-limit 50/s -replicas 4 -timeout 4m -json -quiet >>"$OUT/flow.jsonl" || echo "run failed: rate limit 50/s" >&2
"$LOADGEN" -count 320 -rate-limit 5/s,burst=10 -replicas 4 -timeout 4m -json -quiet >>"$OUT/flow.jsonl" || echo "run failed: rate limit 5/s,burst=10" >&2

# 5: the producer's relay against raw JetStream async publishes, in one
# run; the consumer's worker and archiver paths; the engine ceiling as a
# benchmark.
go test -run '^$' -bench 'Relay|JetStreamPublishAsync' -benchmem -count 5 ./producer/ | tee "$OUT/producer-bench.txt"
go test -run '^$' -bench 'Worker|Archiver' -benchmem -count 3 ./consumer/ | tee "$OUT/consumer-bench.txt"
go test -run '^$' -bench EngineCeiling -benchmem -benchtime 20000x -count 3 ./scripts/loadtest/ | tee "$OUT/ceiling-bench.txt"
go test -run '^$' -bench 'Transition|ChangeStreamNext|InsertFile' -benchmem -count 2 ./shared/store/embedded/ | tee "$OUT/embedded-bench.txt"
go test -run '^$' -bench JournalSync -count 3 ./shared/store/embedded/internal/engine/ | tee -a "$OUT/embedded-bench.txt"
