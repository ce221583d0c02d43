#!/usr/bin/env bash
# The multi-process check of docs/WIRE.md: the stock commands, each its own
# OS process, against a MongoDB-wire-compatible server and a nats-server
# process, all on 127.0.0.1, through a short flood with failures.
#
#   scripts/wire/pipeline.sh                    # on jongodb (installed if missing)
#   scripts/wire/pipeline.sh -server ferretdb   # on FerretDB
#   scripts/wire/pipeline.sh -count 500 -keep   # bigger; keep the logs
#
# Two deployments share the wire server and the nats-server, on separate
# databases and stream/subject prefixes:
#
#   A. the load generator's check: the stock producer (-disable-change-streams:
#      neither server has change streams) and archiver, and the load
#      generator in external mode, whose own worker replicas run its
#      counting handler; its invariant check (none lost, none
#      double-counted, none left non-terminal) must pass. Its replicas must
#      be the only ones on their streams, so the stock consumers are in B.
#   B. the stock consumers: a second stock producer and archiver, and two
#      stock consumer processes with the demo handler failing a share of
#      runs; scripts/wire/jobflood inserts events and checks that each ends
#      succeeded or archived, once, with attempts within the policy.
#
# Every loop is bounded; every process it starts is stopped, and its
# temporary directory removed, on every exit path. Exit status 0 when both
# checks pass. The command lines are built in the functions below: adjust
# them there when the commands' flags change.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

server=jongodb
count=300
failure_rate=0.3
max_attempts=3
timeout=2m
keep=false
while [ $# -gt 0 ]; do
	case $1 in
	-server) server=$2; shift 2 ;;
	-count) count=$2; shift 2 ;;
	-failure-rate) failure_rate=$2; shift 2 ;;
	-max-attempts) max_attempts=$2; shift 2 ;;
	-timeout) timeout=$2; shift 2 ;;
	-keep) keep=true; shift ;;
	-h | -help | --help) sed -n '2,30p' "$0"; exit 0 ;;
	*) echo "pipeline.sh: unknown flag $1" >&2; exit 2 ;;
	esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/retrigger-wire.XXXXXX")
pids=()
names=()
status=1

log() { echo "pipeline.sh: $(date +%T) $*" >&2; }

cleanup() {
	local code=$?
	trap - EXIT INT TERM
	# stop in reverse order of start: clients first, the servers last
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[$i]}" 2>/dev/null || true
	done
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		local n=0
		while kill -0 "${pids[$i]}" 2>/dev/null && [ $n -lt 100 ]; do
			sleep 0.1
			n=$((n + 1))
		done
		if kill -0 "${pids[$i]}" 2>/dev/null; then
			log "${names[$i]} (pid ${pids[$i]}) ignored SIGTERM for 10s: killing it"
			kill -KILL "${pids[$i]}" 2>/dev/null || true
		fi
		wait "${pids[$i]}" 2>/dev/null || true
	done
	if [ "$keep" = true ] || [ "$status" -ne 0 ]; then
		if [ "$status" -ne 0 ]; then
			log "FAILED; the last lines of each log:"
			for f in "$work"/logs/*.log; do
				[ -f "$f" ] || continue
				echo "----- $(basename "$f")" >&2
				tail -n 15 "$f" >&2
			done
		fi
		if [ "$keep" = true ]; then
			log "logs kept in $work/logs"
			rm -rf "$work/bin" "$work/nats" "$work/server"
			exit "$code"
		fi
	fi
	rm -rf "$work"
	exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$work/bin" "$work/logs" "$work/nats" "$work/server"

# start NAME CMD...: runs CMD in the background, its output in logs/NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$work/logs/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name")
}

# wait_for WHAT SECONDS COMMAND...: polls COMMAND every 0.1 s until it
# succeeds, at most SECONDS.
wait_for() {
	local what=$1 tries=$(($2 * 10))
	shift 2
	local i
	for ((i = 0; i < tries; i++)); do
		if "$@" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	log "$what: not ready after $((tries / 10))s"
	return 1
}

# run NAME CMD...: runs CMD to its end, output in logs/NAME.out and
# logs/NAME.log. It runs in the background and is waited for, so that an
# interrupt stops the script at once (bash runs a trap only after a
# foreground command ends) and cleanup stops CMD too.
run() {
	local name=$1
	shift
	"$@" >"$work/logs/$name.out" 2>"$work/logs/$name.log" &
	pids+=($!)
	names+=("$name")
	local rc=0
	wait $! || rc=$?
	cat "$work/logs/$name.out"
	return $rc
}

alive() { # every process started so far still runs
	local i
	for i in "${!pids[@]}"; do
		case ${names[$i]} in loadgen | jobflood) continue ;; esac # ran to their end
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			log "${names[$i]} exited early"
			return 1
		fi
	done
}

build() {
	log "building the commands"
	go build -o "$work/bin/" ./producer/cmd/producer ./consumer/cmd/consumer ./consumer/cmd/archiver \
		./scripts/loadgen ./scripts/wire/jobflood
	# the nats-server of shared/go.mod
	(cd shared && go build -o "$work/bin/nats-server" github.com/nats-io/nats-server/v2)
}

server_binary() {
	case $server in
	jongodb) echo "${RETRIGGER_TEST_JONGODB:-$("$repo/scripts/wire/install.sh" jongodb)}" ;;
	ferretdb) echo "${RETRIGGER_TEST_FERRETDB:-$("$repo/scripts/wire/install.sh" ferretdb)}" ;;
	*) log "unknown -server $server: jongodb or ferretdb"; exit 2 ;;
	esac
}

# start_wire_server sets mongo to the server's URI.
start_wire_server() {
	local bin
	bin=$(server_binary)
	local out=$work/logs/$server.log
	case $server in
	jongodb)
		start "$server" "$bin" --host=127.0.0.1 --port=0
		wait_for "$server" 30 grep -q '^JONGODB_URI=' "$out"
		mongo=$(sed -n 's|^JONGODB_URI=mongodb://\([0-9.:]*\).*|mongodb://\1/|p' "$out" | head -n 1)
		;;
	ferretdb)
		mkdir -p "$work/server/data"
		start "$server" "$bin" --handler=sqlite --sqlite-url="file:$work/server/data/" --state-dir="$work/server" \
			--listen-addr=127.0.0.1:0 --debug-addr=- --telemetry=disable --log-format=json --log-level=info
		wait_for "$server" 30 grep -q 'Listening on TCP' "$out"
		mongo=$(sed -n 's|.*Listening on TCP \(127\.0\.0\.1:[0-9]*\).*|mongodb://\1/|p' "$out" | head -n 1)
		;;
	esac
	mongo="${mongo}?directConnection=true"
	log "$server listening: $mongo"
}

# start_nats sets nats to the nats-server's URL.
start_nats() {
	start nats-server "$work/bin/nats-server" -a 127.0.0.1 -p -1 -m -1 -js -sd "$work/nats" --ports_file_dir "$work/nats"
	wait_for nats-server 30 sh -c "ls '$work'/nats/*.ports >/dev/null"
	local ports
	ports=$(cat "$work"/nats/*.ports)
	nats=$(echo "$ports" | sed -n 's|.*"nats":\["\([^"]*\)".*|\1|p')
	monitor=$(echo "$ports" | sed -n 's|.*"monitoring":\["\([^"]*\)".*|\1|p')
	log "nats-server listening: $nats"
}

stream_exists() { # stream_exists NAME: JetStream has the stream
	curl -fsS "$monitor/jsz?streams=true" | grep -Eq "\"name\": *\"$1\""
}

# The deployments. Common flags of the stock commands:
common() { # common DATABASE STREAM_PREFIX SUBJECT_PREFIX
	echo -mongodb-uri "$mongo" -mongodb-database "$1" -nats-url "$nats" \
		-stream-prefix "$2" -subject-prefix "$3" -log-format json -log-level info
}

producer() { # producer NAME DATABASE STREAM_PREFIX SUBJECT_PREFIX
	local name=$1
	shift
	# shellcheck disable=SC2046 # common's words are flags without spaces
	start "$name" "$work/bin/producer" $(common "$@") -disable-change-streams -sweep-interval 250ms
	wait_for "$name streams" 30 stream_exists "${2}_EVENTS"
}

archiver() { # archiver NAME DATABASE STREAM_PREFIX SUBJECT_PREFIX
	local name=$1
	shift
	# shellcheck disable=SC2046
	start "$name" "$work/bin/archiver" $(common "$@")
}

consumer() { # consumer NAME DATABASE STREAM_PREFIX SUBJECT_PREFIX
	local name=$1
	shift
	# shellcheck disable=SC2046
	start "$name" "$work/bin/consumer" $(common "$@") -handlers 'job=demo' -demo-failure-rate "$failure_rate" \
		-demo-latency 5ms -retry-initial 100ms -retry-max-interval 1s -retry-max-attempts "$max_attempts"
}

build
start_wire_server
start_nats

log "deployment A (load generator): producer, archiver, loadgen with 2 replicas"
producer producer-a retrigger_loadtest RETRIGGER retrigger
archiver archiver-a retrigger_loadtest RETRIGGER retrigger
log "deployment B (stock consumers): producer, 2 consumers, archiver"
producer producer-b retrigger_stock STOCK stock
consumer consumer-b1 retrigger_stock STOCK stock
consumer consumer-b2 retrigger_stock STOCK stock
archiver archiver-b retrigger_stock STOCK stock
alive

log "flooding A: $count events, failure rate $failure_rate, $max_attempts attempts"
loadgen_ok=true
run loadgen "$work/bin/loadgen" -mongodb-uri "$mongo" -mongodb-database retrigger_loadtest -nats-url "$nats" \
	-stream-prefix RETRIGGER -subject-prefix retrigger -count "$count" -failure-rate "$failure_rate" \
	-max-attempts "$max_attempts" -replicas 2 -timeout "$timeout" -quiet || loadgen_ok=false
alive || loadgen_ok=false

log "flooding B: $count events of type job"
jobflood_ok=true
run jobflood "$work/bin/jobflood" -mongodb-uri "$mongo" -mongodb-database retrigger_stock -count "$count" \
	-max-attempts "$max_attempts" -timeout "$timeout" || jobflood_ok=false
alive || jobflood_ok=false

if [ "$loadgen_ok" = true ] && [ "$jobflood_ok" = true ]; then
	status=0
	log "PASS on $server: the load generator's invariants hold, and the stock consumers finished every event"
else
	log "FAIL on $server: load generator ok=$loadgen_ok, stock consumers ok=$jobflood_ok"
fi
exit "$status"
