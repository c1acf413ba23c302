#!/usr/bin/env bash
# Control-plane benchmark: N stacks of 3 services (replicas 0, so no container
# start skews the numbers) applied, converged, re-converged and checked for
# drift by swarmkeeper, next to `docker stack deploy` of the same files.
# Prints a Markdown report (also written to target/bench-report.md) and fails
# when a target is missed. Usage: hack/bench.sh [N]   (default 20)
#
# Targets (2 cores, a single-node swarm on loopback):
#   - a pass over converged state sends 0 writes to dockerd and takes < 2 s for 20 stacks;
#   - the first converge is not slower than `docker stack deploy --resolve-image never`.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

N=${1:-20}
"$REPO_ROOT/hack/setup.sh" >/dev/null
cargo build --quiet --release --bin swarmkeeper
SK="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/swarmkeeper"

WORK=$(mktemp -d -t swarmkeeper-bench.XXXXXX)
RUN=b$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
cleanup() {
	local rc=$?
	"$SK" delete -f "$WORK/records" >/dev/null 2>&1 || true
	"$SK" run --once >/dev/null 2>&1 || true
	for i in $(seq 1 "$N"); do docker stack rm "${RUN}cli$i" >/dev/null 2>&1 || true; done
	stop_etcd "$WORK/etcd"
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT

port=$(free_port)
start_etcd "$WORK/etcd" "$port" >/dev/null
export SWARMKEEPER_ETCD_ENDPOINTS="http://127.0.0.1:$port" SWARMKEEPER_PREFIX="/bench-$RUN"
export RUST_LOG=warn

mkdir -p "$WORK/records" "$WORK/compose"
for i in $(seq 1 "$N"); do
	cat >"$WORK/compose/stack$i.yml" <<EOF
version: "3.8"
services:
  web:
    image: local/busybox:1
    command: ["sleep", "3600"]
    environment: {INDEX: "$i"}
    deploy: {replicas: 0, labels: {bench: "$RUN"}}
  worker:
    image: local/busybox:1
    command: ["sleep", "3600"]
    deploy: {replicas: 0, resources: {limits: {memory: 32M}}}
  cache:
    image: local/busybox:1
    command: ["sleep", "3600"]
    deploy: {replicas: 0, endpoint_mode: dnsrr}
EOF
	cat >"$WORK/records/stack$i.yaml" <<EOF
apiVersion: swarmkeeper.dev/v1alpha1
kind: Stack
metadata: {name: ${RUN}sk$i}
spec: {composeFile: ../compose/stack$i.yml}
EOF
done

# seconds CMD...: runs CMD quietly and prints its wall time in seconds.
seconds() {
	local start end
	start=$(date +%s.%N)
	"$@" >"$WORK/last.out" 2>&1
	end=$(date +%s.%N)
	awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}
writes() { sed -n 's/.*with \([0-9]*\) writes to dockerd.*/\1/p' "$WORK/last.out"; }

t_apply=$(seconds "$SK" apply -f "$WORK/records")
t_first=$(seconds "$SK" run --once)
w_first=$(writes)
t_again=$(seconds "$SK" run --once)
w_again=$(writes)
t_drift=$(seconds "$SK" drift --exit-code)
cli_total=0
for i in $(seq 1 "$N"); do
	t=$(seconds docker stack deploy --resolve-image never -c "$WORK/compose/stack$i.yml" "${RUN}cli$i")
	cli_total=$(awk -v a="$cli_total" -v b="$t" 'BEGIN { printf "%.2f", a + b }')
done

report="target/bench-report.md"
mkdir -p target
{
	echo "### swarmkeeper control-plane benchmark ($N stacks x 3 services, replicas 0)"
	echo
	echo "| step | seconds | writes to dockerd |"
	echo "|---|---|---|"
	echo "| apply $N records | $t_apply | - |"
	echo "| first converge (run --once) | $t_first | $w_first |"
	echo "| converged again (run --once) | $t_again | $w_again |"
	echo "| drift of every record | $t_drift | 0 |"
	echo "| docker stack deploy --resolve-image never, $N times | $cli_total | - |"
} | tee "$report"

fail=0
[[ "$w_again" == 0 ]] || { warn "target missed: a pass over converged state wrote $w_again times"; fail=1; }
# gt A B: whether A > B, for decimal seconds.
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
if ((N <= 20)) && gt "$t_again" 2; then
	warn "target missed: converged pass took ${t_again}s (target < 2 s)"
	fail=1
fi
if gt "$t_first" "$cli_total"; then
	warn "target missed: first converge (${t_first}s) slower than docker stack deploy (${cli_total}s)"
	fail=1
fi
((fail == 0)) && log "all targets met (report: $report)"
exit "$fail"
