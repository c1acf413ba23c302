#!/usr/bin/env bash
# Benchmarks swarmkeeper against what a user would run instead, side by side in one run:
#   - one stack of 50 and one of 200 services (replicas 0: the control plane), 50 with
#     replicas 1, and 1 service (the fixed cost): `swarmkeeper apply` + `run --once` vs `docker stack deploy --resolve-image never`
#     vs bare Engine API creates 8 at a time (examples/bench.rs, the lower bound);
#   - the unchanged pass (`run --once` over converged state): wall time, Docker reads and
#     writes, etcd writes, peak RSS, at 50 services (1 stack) and 1000 (100 stacks of 10);
#   - with `swarmkeeper run` over those 1000 services: heal latency of an out-of-band
#     `docker service scale` (20 trials) and etcd put -> first Docker write (10 trials).
# Each figure is the median of RUNS runs; deploys are compared as ratios, since absolute times
# drift on a shared machine. Writes BENCHMARKS.md (figure, value, target, met?) and
# BENCHMARKS.json at the repository root, and exits 1 when a target is missed.
# Usage: hack/bench.sh [RUNS]   (default 3; about 5 minutes on 2 cores)
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

RUNS=${1:-3}
"$REPO_ROOT/hack/setup.sh" >/dev/null
log "building the release binary and the bench client"
cargo build --quiet --release --bin swarmkeeper
# The client in the dev profile: an example in release would rebuild every dependency with the
# dev-dependencies' features (tokio's test-util); it spends milliseconds of CPU per run, dockerd
# the rest.
cargo build --quiet --example bench
TARGET="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
SK="$TARGET/release/swarmkeeper"
BENCH="$TARGET/debug/examples/bench"

WORK=$(mktemp -d -t swarmkeeper-bench.XXXXXX)
RUN=b$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
SAMPLES="$WORK/samples"
RUNNER=""
STARTED=$SECONDS

# remove_named: every service and then network whose name has this run's id.
remove_named() {
	local ids
	ids=$(docker service ls -q --filter "name=$RUN")
	# shellcheck disable=SC2086
	[[ -z "$ids" ]] || docker service rm $ids >/dev/null 2>&1 || true
	wait_for 120 "services of $RUN to go" bash -c "[[ -z \$(docker service ls -q --filter name=$RUN) ]]" || true
	for _ in $(seq 1 60); do
		ids=$(docker network ls -q --filter "name=$RUN")
		[[ -n "$ids" ]] || break
		# shellcheck disable=SC2086
		docker network rm $ids >/dev/null 2>&1 || sleep 1
	done
}
cleanup() {
	local rc=$?
	[[ -z "$RUNNER" ]] || { kill "$RUNNER" 2>/dev/null && wait "$RUNNER" 2>/dev/null; } || true
	remove_named
	stop_etcd "$WORK/etcd"
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT

port=$(free_port)
start_etcd "$WORK/etcd" "$port" >/dev/null
ENDPOINT="http://127.0.0.1:$port"
PREFIX="/bench-$RUN"
export SWARMKEEPER_ETCD_ENDPOINTS="$ENDPOINT" SWARMKEEPER_PREFIX="$PREFIX" RUST_LOG=warn

# measure OUT CMD...: runs CMD (output to OUT) and prints its wall seconds and peak RSS in KiB.
measure() {
	python3 - "$@" <<'EOF'
import resource, subprocess, sys, time
with open(sys.argv[1], "w") as out:
    start = time.monotonic()
    code = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - start
print(f"{seconds:.4f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
sys.exit(code)
EOF
}
sample() { echo "$1 $2" >>"$SAMPLES"; }

# compose FILE SERVICES REPLICAS: a compose file of SERVICES idle services.
compose() {
	{
		echo 'version: "3.8"'
		echo 'services:'
		for i in $(seq 1 "$2"); do
			printf '  s%s:\n    image: local/busybox:1\n    command: ["sleep", "3600"]\n    deploy: {replicas: %s}\n' "$i" "$3"
		done
	} >"$1"
}
# record DIR NAME COMPOSE: a Stack record NAME in DIR whose composeFile is COMPOSE.
record() {
	mkdir -p "$1"
	printf 'apiVersion: swarmkeeper.dev/v1alpha1\nkind: Stack\nmetadata: {name: %s}\nspec: {composeFile: %s}\n' \
		"$2" "$3" >"$1/$2.yaml"
}
# gone NAME: waits until no service or network of stack NAME is left.
gone() {
	wait_for 180 "stack $1 to go" bash -c \
		"[[ -z \$(docker service ls -q --filter label=com.docker.stack.namespace=$1)\$(docker network ls -q --filter label=com.docker.stack.namespace=$1) ]]"
}
# etcd_revision: the store's current revision.
etcd_revision() {
	ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINT" endpoint status -w json | jq '.[0].Status.header.revision'
}
# etcd_writes SINCE: status and event keys written after revision SINCE (the election's own
# leader key is not counted: `run --once` campaigns and resigns every time).
etcd_writes() {
	local prefix
	for prefix in status events; do
		ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINT" get --prefix "$PREFIX/$prefix/" -w json |
			jq --argjson since "$1" '[.kvs[]? | select(.mod_revision > $since)] | length'
	done | awk '{ n += $1 } END { print n + 0 }'
}
# unchanged LABEL: three `run --once` passes over converged state, sampled as LABEL_*.
unchanged() {
	local i rev m
	for i in 1 2 3; do
		rev=$(etcd_revision)
		m=$(measure "$WORK/pass.out" "$SK" run --once)
		sample "${1}_seconds" "${m% *}"
		sample "${1}_rss_kib" "${m#* }"
		sample "${1}_docker_writes" "$(sed -n 's/.*with \([0-9]*\) writes to dockerd.*/\1/p' "$WORK/pass.out")"
		sample "${1}_docker_reads" "$(sed -n 's/.*and \([0-9]*\) reads.*/\1/p' "$WORK/pass.out")"
		sample "${1}_etcd_writes" "$(etcd_writes "$rev")"
	done
}

log "deploys: swarmkeeper vs docker stack deploy vs bare API, $RUNS runs each"
# One service first: what each way costs whatever the stack (processes, connections, election).
for size in "1 0" "50 0" "200 0" "50 1"; do
	read -r n replicas <<<"$size"
	compose "$WORK/c${n}r$replicas.yml" "$n" "$replicas"
	for run in $(seq 1 "$RUNS"); do
		name="${RUN}k${n}r${replicas}x$run"
		record "$WORK/deploy/$name" "$name" "../../c${n}r$replicas.yml"
		m=$(measure "$WORK/sk.out" bash -c "'$SK' apply -f '$WORK/deploy/$name' >/dev/null && '$SK' run --once")
		sample "deploy_${n}_r${replicas}_swarmkeeper" "${m% *}"
		if [[ $n == 50 && $replicas == 0 ]]; then unchanged unchanged_50; fi
		"$SK" delete stack "$name" >/dev/null
		docker stack rm "$name" >/dev/null
		gone "$name"

		name="${RUN}c${n}r${replicas}x$run"
		m=$(measure "$WORK/cli.out" docker stack deploy --resolve-image never -c "$WORK/c${n}r$replicas.yml" "$name")
		sample "deploy_${n}_r${replicas}_cli" "${m% *}"
		docker stack rm "$name" >/dev/null
		gone "$name"

		name="${RUN}a${n}r${replicas}x$run"
		"$BENCH" bare "$name" "$n" "$replicas" >"$WORK/bare.json"
		sample "deploy_${n}_r${replicas}_bare" "$(jq .seconds "$WORK/bare.json")"
		docker stack rm "$name" >/dev/null
		gone "$name"
	done
done

log "1000 services over 100 stacks: first converge, then unchanged passes"
compose "$WORK/c10.yml" 10 0
for i in $(seq 1 100); do record "$WORK/many" "${RUN}m$i" ../c10.yml; done
m=$(measure "$WORK/apply.out" "$SK" apply -f "$WORK/many")
sample apply_100_seconds "${m% *}"
m=$(measure "$WORK/first.out" "$SK" run --once)
sample converge_1000_seconds "${m% *}"
unchanged unchanged_1000

log "swarmkeeper run over 1000 services: heal latency, then put -> first write"
http=$(free_port)
"$SK" run --http-addr "127.0.0.1:$http" --resync 1h >"$WORK/run.log" 2>&1 &
RUNNER=$!
wait_for 30 "swarmkeeper run to be ready" curl -sf "http://127.0.0.1:$http/readyz"
# The first passes (the etcd listing and the first resync name every record) settle first.
sleep 5
"$BENCH" heal "swarmkeeper.scope=$PREFIX" 20 >"$WORK/heal.json"
jq -r '.seconds[]' "$WORK/heal.json" | while read -r s; do sample heal_seconds "$s"; done
sample heal_failed "$(jq .failed "$WORK/heal.json")"
"$BENCH" put "$ENDPOINT" "$PREFIX" "${RUN}p" 10 >"$WORK/put.json"
jq -r '.seconds[]' "$WORK/put.json" | while read -r s; do sample put_seconds "$s"; done
sample put_failed "$(jq .failed "$WORK/put.json")"
kill "$RUNNER"
wait "$RUNNER" || true
RUNNER=""

sample total_seconds "$((SECONDS - STARTED))"
python3 "$REPO_ROOT/hack/bench_report.py" "$SAMPLES" "$RUNS" BENCHMARKS.md BENCHMARKS.json
log "report: BENCHMARKS.md, BENCHMARKS.json ($((SECONDS - STARTED)) s; cleaning up)"
grep -q '| no |' BENCHMARKS.md && exit 1
exit 0
