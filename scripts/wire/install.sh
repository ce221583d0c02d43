#!/usr/bin/env bash
# Installs the MongoDB-wire-compatible test servers of docs/WIRE.md into a
# cache directory, only if missing, and prints each binary's path on stdout
# (progress goes to stderr):
#
#   scripts/wire/install.sh              # jongodb
#   scripts/wire/install.sh ferretdb     # FerretDB (builds it: about 2 min)
#   scripts/wire/install.sh jongodb ferretdb
#
#   export RETRIGGER_TEST_JONGODB=$(scripts/wire/install.sh jongodb)
#
# jongodb comes from the npm registry (needs npm), FerretDB from the Go module
# proxy (needs go). Cache: $RETRIGGER_WIRE_CACHE, default
# $HOME/.cache/retrigger; jongodb goes to $RETRIGGER_JONGODB_DIR (default
# <cache>/jongodb), FerretDB to $RETRIGGER_FERRETDB_DIR (<cache>/ferretdb).
set -euo pipefail

JONGODB_PACKAGE=@jongodb/memory-server-bin-linux-x64-gnu
JONGODB_VERSION=0.1.6
FERRETDB_MODULE=github.com/FerretDB/FerretDB
FERRETDB_VERSION=v1.24.2

cache=${RETRIGGER_WIRE_CACHE:-$HOME/.cache/retrigger}
jongodb_dir=${RETRIGGER_JONGODB_DIR:-$cache/jongodb}
ferretdb_dir=${RETRIGGER_FERRETDB_DIR:-$cache/ferretdb}

log() { echo "install.sh: $*" >&2; }

tmp=
cleanup() { if [ -n "$tmp" ]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT

install_jongodb() {
	local dir=$jongodb_dir/$JONGODB_VERSION
	local bin=$dir/node_modules/$JONGODB_PACKAGE/bin/jongodb
	if [ -x "$bin" ]; then
		echo "$bin"
		return
	fi
	command -v npm >/dev/null || { log "npm is needed to install jongodb (apt-get install npm)"; exit 1; }
	case "$(uname -s)-$(uname -m)" in
	Linux-x86_64) ;;
	*) log "jongodb's npm binary is for linux x64 only, not $(uname -s)-$(uname -m)"; exit 1 ;;
	esac
	log "installing $JONGODB_PACKAGE@$JONGODB_VERSION into $dir"
	mkdir -p "$jongodb_dir"
	tmp=$(mktemp -d "$jongodb_dir/.install.XXXXXX")
	npm install --prefix "$tmp" --no-audit --no-fund --no-save --loglevel=error \
		"$JONGODB_PACKAGE@$JONGODB_VERSION" >&2
	local pkg=$tmp/node_modules/$JONGODB_PACKAGE
	# the package names its binary's digest
	local want got
	want=$(node -p "require('$pkg/package.json').jongodb.sha256")
	got=$(sha256sum "$pkg/bin/jongodb" | cut -d' ' -f1)
	if [ "$want" != "$got" ]; then
		log "jongodb binary digest $got, the package says $want"
		exit 1
	fi
	chmod +x "$pkg/bin/jongodb"
	chmod 755 "$tmp" # mktemp made it private
	rm -rf "$dir"
	mv "$tmp" "$dir"
	tmp=
	echo "$bin"
}

install_ferretdb() {
	local bin=$ferretdb_dir/ferretdb-$FERRETDB_VERSION
	if [ -x "$bin" ]; then
		echo "$bin"
		return
	fi
	command -v go >/dev/null || { log "go is needed to build FerretDB"; exit 1; }
	log "building $FERRETDB_MODULE@$FERRETDB_VERSION (SQLite backend) into $bin"
	mkdir -p "$ferretdb_dir"
	tmp=$(mktemp -d "$ferretdb_dir/.build.XXXXXX")
	local src
	src=$(GOWORK=off GOFLAGS=-mod=mod go mod download -json "$FERRETDB_MODULE@$FERRETDB_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$src" ] || { log "go mod download gave no source directory"; exit 1; }
	cp -R "$src" "$tmp/src"
	chmod -R u+w "$tmp/src"
	# the build embeds build/version/*.txt, which a release's tooling writes
	echo "$FERRETDB_VERSION" >"$tmp/src/build/version/version.txt"
	(cd "$tmp/src" && GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 \
		go build -trimpath -o "$tmp/ferretdb" ./cmd/ferretdb) >&2
	mv "$tmp/ferretdb" "$bin"
	rm -rf "$tmp"
	tmp=
	echo "$bin"
}

[ $# -gt 0 ] || set -- jongodb
for server in "$@"; do
	case $server in
	jongodb) install_jongodb ;;
	ferretdb) install_ferretdb ;;
	*) log "unknown server $server: jongodb or ferretdb"; exit 2 ;;
	esac
done
