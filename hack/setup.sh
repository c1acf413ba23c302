#!/usr/bin/env bash
# Brings a Debian bookworm machine (root, no systemd) to the state the tests and the demo expect:
# packages installed, dockerd running in a single-node swarm, local images built, PostgreSQL and
# MariaDB running, Rust lint components present. Idempotent; a no-op run takes a second or two.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) -eq 0 ]] || die "hack/setup.sh must run as root (it installs packages and starts daemons)"

PACKAGES=(
	docker.io cgroupfs-mount iptables
	etcd-server etcd-client
	# etcd-client builds its protos with protoc, which needs the well-known .proto files of
	# libprotobuf-dev (only a recommend of protobuf-compiler, and we install without recommends)
	protobuf-compiler libprotobuf-dev
	busybox-static docker-registry
	postgresql mariadb-server
	# used by the scripts and tests: YAML editing in demo.sh, probes of published ports
	python3 python3-yaml curl netcat-openbsd ca-certificates
	# sync and run --sync follow Git repositories through the git CLI
	git
)
DOCKERD_LOG=/var/log/dockerd.log
SUMMARY=()

done_step() { SUMMARY+=("$*"); }

is_installed() {
	[[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# Debian's etcd and docker-registry packages start their daemons on install; tests spawn their
# own etcd and publish their own registry on :5000, so neither may run as a system service.
stop_system_service() {
	local name=$1 pidfile="/run/$1.pid"
	if [[ -f "$pidfile" ]] && kill -0 "$(<"$pidfile")" 2>/dev/null; then
		log "stopping the system $name service (tests run their own)"
		service "$name" stop >/dev/null 2>&1 || kill "$(<"$pidfile")"
		done_step "stopped system service $name"
	fi
}

install_packages() {
	local missing=() pkg
	for pkg in "${PACKAGES[@]}"; do
		is_installed "$pkg" || missing+=("$pkg")
	done
	if ((${#missing[@]} > 0)); then
		log "installing ${missing[*]}"
		# policy-rc.d exit 101 keeps invoke-rc.d from starting services during the install.
		if [[ ! -e /usr/sbin/policy-rc.d ]]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod +x /usr/sbin/policy-rc.d
			trap 'rm -f /usr/sbin/policy-rc.d' EXIT
		fi
		# needrestart (a recommend of some packages) would otherwise prompt or list daemons.
		export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}"
		done_step "installed ${missing[*]}"
	fi
	stop_system_service etcd
	stop_system_service docker-registry
}

ensure_rust_components() {
	if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
		command -v rustup >/dev/null || die "cargo fmt/clippy are missing and rustup is not installed"
		log "adding rustfmt and clippy"
		rustup component add rustfmt clippy
		done_step "added rustfmt and clippy"
	fi
}

docker_answers() { docker info >/dev/null 2>&1; }

start_dockerd() {
	docker_answers && return 0
	# Without systemd nobody mounts the cgroup hierarchies; Debian's init script does the same.
	if ! mountpoint -q /sys/fs/cgroup; then
		log "mounting cgroups"
		cgroupfs-mount
	fi
	if ! iptables -nL >/dev/null 2>&1; then
		warn "iptables (nf_tables) does not work here; switching to iptables-legacy"
		update-alternatives --set iptables /usr/sbin/iptables-legacy
		update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy
	fi
	local pid
	if [[ -f /var/run/docker.pid ]]; then
		pid=$(</var/run/docker.pid)
		if kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]]; then
			log "dockerd (pid $pid) is running but not answering yet; waiting"
			wait_for 60 "dockerd (pid $pid) to answer" docker info ||
				die "dockerd (pid $pid) does not answer; see $DOCKERD_LOG, or kill it and rerun"
			return 0
		fi
		# A dockerd killed hard leaves its pid file, and a new dockerd refuses to start over it.
		log "removing stale /var/run/docker.pid (pid $pid is not dockerd)"
		rm -f /var/run/docker.pid
	fi
	log "starting dockerd (log: $DOCKERD_LOG)"
	setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
	wait_for 60 "dockerd to answer" docker info || {
		tail -n 30 "$DOCKERD_LOG" >&2
		die "dockerd did not start within 60 s; see $DOCKERD_LOG"
	}
	done_step "started dockerd"
}

ensure_swarm() {
	local state
	state=$(docker info --format '{{.Swarm.LocalNodeState}}')
	case "$state" in
	active) ;;
	inactive)
		log "initialising a single-node swarm"
		docker swarm init --advertise-addr 127.0.0.1 >/dev/null
		done_step "initialised the swarm"
		;;
	locked)
		die "the swarm is locked (autolock): run 'docker swarm unlock', then rerun hack/setup.sh"
		;;
	*)
		die "the swarm is in state '$state'; on a dev machine reset it with 'docker swarm leave --force' (this removes its services, secrets and networks), then rerun hack/setup.sh"
		;;
	esac
	[[ $(docker info --format '{{.Swarm.ControlAvailable}}') == true ]] ||
		die "this node is a swarm worker; swarmkeeper and its tests need a manager"
}

BUSYBOX_DOCKERFILE='FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
'

build_busybox_image() {
	local image=local/busybox:1 hash ctx
	hash=$(image_hash "$BUSYBOX_DOCKERFILE" /bin/busybox)
	image_is_current "$image" "$hash" && return 0
	log "building $image"
	ctx=$(mktemp -d)
	cp /bin/busybox "$ctx/busybox"
	printf '%s' "$BUSYBOX_DOCKERFILE" >"$ctx/Dockerfile"
	build_image "$image" "$hash" "$ctx"
	[[ $(docker run --rm "$image" echo ok) == ok ]] || die "$image does not run"
	done_step "built $image"
}

REGISTRY_DOCKERFILE='FROM scratch
COPY root/ /
ENTRYPOINT ["/docker-registry"]
CMD ["serve", "/etc/docker/registry/config.yml"]
'
# Debian's default config minus its htpasswd auth: the Registry kind configures auth itself
# (through REGISTRY_AUTH_* variables), and tests need an open registry too.
REGISTRY_CONFIG='version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
'

build_registry_image() {
	local image=local/registry:2 binary=/usr/bin/docker-registry hash ctx libs
	mapfile -t libs < <(shared_libraries "$binary")
	hash=$(image_hash "$REGISTRY_DOCKERFILE$REGISTRY_CONFIG" "$binary" "${libs[@]}")
	image_is_current "$image" "$hash" && return 0
	log "building $image"
	ctx=$(mktemp -d)
	mkdir -p "$ctx/root/etc/docker/registry" "$ctx/root/var/lib/registry"
	cp "$binary" "$ctx/root/docker-registry"
	copy_files "$ctx/root" "${libs[@]}"
	printf '%s' "$REGISTRY_CONFIG" >"$ctx/root/etc/docker/registry/config.yml"
	printf '%s' "$REGISTRY_DOCKERFILE" >"$ctx/Dockerfile"
	build_image "$image" "$hash" "$ctx"
	verify_registry_image "$image"
	done_step "built $image (verified: /v2/ answers)"
}

# Runs the image on the host network on a free port and expects the registry API to answer.
verify_registry_image() {
	local image=$1 port name=swarmkeeper-setup-registry-check ok=true
	port=$(free_port)
	docker rm -f "$name" >/dev/null 2>&1 || true
	docker run -d --name "$name" --network host -e "REGISTRY_HTTP_ADDR=127.0.0.1:$port" "$image" >/dev/null
	wait_for 20 "$image to answer on 127.0.0.1:$port/v2/" curl -fsS "http://127.0.0.1:$port/v2/" || ok=false
	$ok || docker logs "$name" 2>&1 | tail -n 20 >&2
	docker rm -f "$name" >/dev/null
	$ok || die "$image does not serve /v2/"
}

start_postgres() {
	local version
	version=$(pg_lsclusters -h | awk '{print $1}' | sort -V | tail -n 1)
	if [[ -z "$version" ]]; then
		version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
		log "creating PostgreSQL $version cluster main"
		pg_createcluster "$version" main >/dev/null
	fi
	if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online" { found = 1 } END { exit !found }'; then
		log "starting PostgreSQL $version"
		pg_ctlcluster "$version" main start 9>&-
		done_step "started PostgreSQL $version"
	fi
	su postgres -c "psql -Atqc 'select 1'" >/dev/null ||
		die "cannot connect to PostgreSQL as postgres; see /var/log/postgresql/"
}

start_mariadb() {
	if ! mysqladmin --user=root ping >/dev/null 2>&1; then
		log "starting MariaDB"
		# The init script runs mysqld_safe and waits for it; it needs no systemd.
		service mariadb start >/dev/null 9>&-
		wait_for 30 "MariaDB to answer" mysqladmin --user=root ping ||
			die "MariaDB did not start; see /var/log/mysql/ and /var/lib/mysql/*.err"
		done_step "started MariaDB"
	fi
	mysql --user=root -e 'select 1' >/dev/null ||
		die "cannot connect to MariaDB as root over the local socket"
}

main() {
	local start=$SECONDS
	# Test runs call setup concurrently; two of them must not start two dockerds or two apt-gets.
	# Daemons started below get `9>&-`: one that inherited fd 9 would hold the lock forever.
	exec 9>/run/swarmkeeper-setup.lock
	flock -w 300 9 || die "another hack/setup.sh has held /run/swarmkeeper-setup.lock for 5 minutes"
	install_packages
	ensure_rust_components
	start_dockerd
	ensure_swarm
	build_busybox_image
	build_registry_image
	start_postgres
	start_mariadb
	if ((${#SUMMARY[@]} == 0)); then
		log "setup: everything already in place ($((SECONDS - start))s)"
	else
		log "setup done in $((SECONDS - start))s:"
		printf '    - %s\n' "${SUMMARY[@]}" >&2
	fi
	printf '    docker %s (swarm %s), images local/busybox:1 local/registry:2, etcd %s, PostgreSQL %s, MariaDB %s\n' \
		"$(docker version --format '{{.Server.Version}}')" \
		"$(docker info --format '{{.Swarm.LocalNodeState}}')" \
		"$(etcd --version | awk 'NR == 1 { print $3 }')" \
		"$(pg_lsclusters -h | awk '$4 == "online" { print $1; exit }')" \
		"$(mysql --user=root -N -e 'select version()')" >&2
}

main "$@"
