# shellcheck shell=bash
# Helpers shared by the hack/ scripts: logging, the docker CLI we use, free ports, a private etcd.
# Source it; it sets no shell options of its own.

# The repository root, whatever the caller's working directory.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

# Debian's docker.io CLI (20.10) matches the daemon it ships; the newer CLI some machines have in
# /usr/local/bin works too, but only after downgrading its API version, and its `docker build`
# prints a legacy-builder deprecation notice. Override with DOCKER_BIN=... if you must.
DOCKER_BIN="${DOCKER_BIN:-/usr/bin/docker}"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die() {
	printf '\033[1;31merror:\033[0m %s\n' "$*" >&2
	exit 1
}

docker() { command "$DOCKER_BIN" "$@"; }

# port_in_use PORT: true when something listens on 127.0.0.1:PORT.
port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port: prints a loopback TCP port nobody listens on. Ports are picked at random from a range
# below the kernel's ephemeral range (32768-60999) so outgoing connections do not take them.
free_port() {
	local port tries
	for tries in $(seq 1 100); do
		port=$((20000 + RANDOM % 12000))
		if ! port_in_use "$port"; then
			printf '%s\n' "$port"
			return 0
		fi
	done
	die "free_port: no free port found after $tries tries"
}

# wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND every 0.2 s until it succeeds.
wait_for() {
	local seconds=$1 what=$2
	shift 2
	local deadline=$((SECONDS + seconds))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			warn "timed out after ${seconds}s waiting for $what"
			return 1
		fi
		sleep 0.2
	done
}

# start_etcd DIR PORT: starts a private single-member etcd serving clients on 127.0.0.1:PORT, with
# its data in DIR/data and its log in DIR/etcd.log, waits until it is healthy, and prints its PID
# (also written to DIR/etcd.pid, which stop_etcd reads).
start_etcd() {
	local dir=$1 port=$2 peer pid
	[[ -n "$dir" && -n "$port" ]] || die "usage: start_etcd DIR PORT"
	command -v etcd >/dev/null || die "etcd is not installed: run hack/setup.sh"
	port_in_use "$port" && die "start_etcd: port $port is already in use"
	peer=$(free_port)
	while [[ "$peer" == "$port" ]]; do peer=$(free_port); done
	mkdir -p "$dir"
	etcd --name swarmkeeper-dev \
		--data-dir "$dir/data" \
		--listen-client-urls "http://127.0.0.1:$port" \
		--advertise-client-urls "http://127.0.0.1:$port" \
		--listen-peer-urls "http://127.0.0.1:$peer" \
		--initial-advertise-peer-urls "http://127.0.0.1:$peer" \
		--initial-cluster "swarmkeeper-dev=http://127.0.0.1:$peer" \
		>"$dir/etcd.log" 2>&1 </dev/null &
	pid=$!
	printf '%s\n' "$pid" >"$dir/etcd.pid"
	if ! wait_for 30 "etcd on 127.0.0.1:$port" \
		env ETCDCTL_API=3 etcdctl --endpoints "http://127.0.0.1:$port" endpoint health; then
		kill "$pid" 2>/dev/null || true
		tail -n 20 "$dir/etcd.log" >&2
		die "etcd did not become healthy (log: $dir/etcd.log)"
	fi
	printf '%s\n' "$pid"
}

# stop_etcd DIR: stops the etcd that start_etcd DIR started, and waits for it to exit.
stop_etcd() {
	local dir=$1 pid
	[[ -f "$dir/etcd.pid" ]] || return 0
	pid=$(<"$dir/etcd.pid")
	if kill "$pid" 2>/dev/null; then
		wait_for 10 "etcd (pid $pid) to exit" bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/etcd.pid"
}

# Local images: built FROM scratch out of files on this machine (nothing is ever pulled), each
# labelled with a hash of its inputs so that a rebuild happens exactly when an input changed.
IMAGE_HASH_LABEL=dev.swarmkeeper.input-hash

# image_hash TEXT FILE...: a hash of the build inputs, stored as a label to detect stale images.
image_hash() {
	local text=$1
	shift
	{
		printf '%s' "$text"
		sha256sum "$@" | cut -d' ' -f1
	} | sha256sum | cut -c1-16
}

# image_is_current IMAGE HASH: true when IMAGE exists and was built from inputs hashing to HASH.
image_is_current() {
	local image=$1 hash=$2
	[[ $(docker image inspect --format "{{ index .Config.Labels \"$IMAGE_HASH_LABEL\" }}" "$image" 2>/dev/null) == "$hash" ]]
}

# build_image IMAGE HASH CONTEXT: builds CONTEXT as IMAGE labelled with HASH, removes CONTEXT, and
# removes the image IMAGE named before when nothing else names or uses it.
build_image() {
	local image=$1 hash=$2 ctx=$3 previous
	previous=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
	docker build -q --label "$IMAGE_HASH_LABEL=$hash" -t "$image" "$ctx" >/dev/null
	rm -rf "$ctx"
	if [[ -n "$previous" && "$previous" != "$(docker image inspect --format '{{.Id}}' "$image")" ]]; then
		docker image rm "$previous" >/dev/null 2>&1 || true
	fi
}

# shared_libraries FILE: the libraries the dynamic loader needs for FILE, absolute paths, the
# loader included.
shared_libraries() {
	ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
}

# copy_files ROOT FILE...: copies each FILE (symlinks followed) under ROOT at its absolute path,
# as an image built from ROOT needs a binary's libraries.
copy_files() {
	local root=$1 file
	shift
	for file in "$@"; do
		cp -L --parents "$file" "$root/"
	done
}
