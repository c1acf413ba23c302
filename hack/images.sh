#!/usr/bin/env bash
# Builds the images manifests/swarmkeeper.yml runs, FROM scratch and from this machine's files
# (nothing is pulled): local/etcd:3.4 from /usr/bin/etcd, local/swarmkeeper:dev from a debug build
# of this repository; and local/postgres-client:15, which BackupJobs dump PostgreSQL with. Each binary goes in with the libraries ldd lists. Idempotent: an image is
# rebuilt only when its inputs changed; a no-op run costs a `cargo build` that has nothing to do.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

ETCD_IMAGE=local/etcd:3.4
SWARMKEEPER_IMAGE=local/swarmkeeper:dev

ETCD_DOCKERFILE='FROM scratch
COPY root/ /
ENTRYPOINT ["/usr/bin/etcd"]
CMD ["--data-dir", "/var/lib/etcd"]
'
# No CA bundle: swarmkeeper trusts only the CA given with --etcd-ca, and dockerd is a unix socket.
SWARMKEEPER_DOCKERFILE='FROM scratch
COPY root/ /
ENTRYPOINT ["/usr/local/bin/swarmkeeper"]
CMD ["run"]
'

# local/postgres-client:15: Debian's pg_dump, pg_restore and psql with the libraries ldd lists, and
# static busybox for sh, gzip and the rest a backup command needs. The binaries are PostgreSQL's own
# (/usr/bin/pg_dump is Debian's Perl wrapper, and there is no Perl in the image).
PG_CLIENT_IMAGE=local/postgres-client:15
PG_CLIENT_DOCKERFILE='FROM scratch
COPY root/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/usr/local/bin:/usr/bin:/bin
CMD ["/bin/sh"]
'
# libpq asks for the name of the user it runs as when no -U is given.
PG_CLIENT_PASSWD='root:x:0:0:root:/root:/bin/sh
'

postgres_client_image() {
	local image=$PG_CLIENT_IMAGE bindir=/usr/lib/postgresql/15/bin hash ctx libs=() tool
	local tools=("$bindir/pg_dump" "$bindir/pg_restore" "$bindir/psql")
	[[ -x "$bindir/pg_dump" ]] || die "PostgreSQL 15's client is not installed: run hack/setup.sh"
	for tool in "${tools[@]}"; do
		mapfile -t -O "${#libs[@]}" libs < <(shared_libraries "$tool")
	done
	mapfile -t libs < <(printf '%s\n' "${libs[@]}" | sort -u)
	hash=$(image_hash "$PG_CLIENT_DOCKERFILE$PG_CLIENT_PASSWD" /bin/busybox "${tools[@]}" "${libs[@]}")
	if ! image_is_current "$image" "$hash"; then
		log "building $image"
		ctx=$(mktemp -d)
		mkdir -p "$ctx/root/bin" "$ctx/root/usr/local/bin" "$ctx/root/etc" "$ctx/root/tmp"
		cp /bin/busybox "$ctx/root/bin/busybox"
		cp "${tools[@]}" "$ctx/root/usr/local/bin/"
		copy_files "$ctx/root" "${libs[@]}"
		printf '%s' "$PG_CLIENT_PASSWD" >"$ctx/root/etc/passwd"
		printf '%s' "$PG_CLIENT_DOCKERFILE" >"$ctx/Dockerfile"
		build_image "$image" "$hash" "$ctx"
	fi
	docker run --rm --network none "$image" sh -c 'pg_dump --version && psql --version' >/dev/null ||
		die "$image does not run pg_dump and psql"
}

# binary_image IMAGE DOCKERFILE BINARY DEST: builds IMAGE holding BINARY at DEST and the libraries
# it loads, unless IMAGE is already built from these inputs; then checks that the binary runs in it.
binary_image() {
	local image=$1 dockerfile=$2 binary=$3 dest=$4 hash ctx libs
	mapfile -t libs < <(shared_libraries "$binary")
	hash=$(image_hash "$dockerfile$dest" "$binary" "${libs[@]}")
	if ! image_is_current "$image" "$hash"; then
		log "building $image"
		ctx=$(mktemp -d)
		mkdir -p "$ctx/root/$(dirname "$dest")"
		cp "$binary" "$ctx/root/$dest"
		copy_files "$ctx/root" "${libs[@]}"
		printf '%s' "$dockerfile" >"$ctx/Dockerfile"
		build_image "$image" "$hash" "$ctx"
	fi
	docker run --rm --network none --entrypoint "$dest" "$image" --version >/dev/null ||
		die "$image does not run $dest"
}

main() {
	command -v etcd >/dev/null || die "etcd is not installed: run hack/setup.sh"
	# Parallel callers (tests, the demo) would otherwise build the same image twice.
	exec 9>/run/swarmkeeper-images.lock
	flock -w 300 9 || die "another hack/images.sh has held /run/swarmkeeper-images.lock for 5 minutes"
	binary_image "$ETCD_IMAGE" "$ETCD_DOCKERFILE" "$(command -v etcd)" /usr/bin/etcd
	postgres_client_image
	# A debug build shares its compiled dependencies with the test suite: quicker than release.
	cargo build --quiet --bin swarmkeeper
	binary_image "$SWARMKEEPER_IMAGE" "$SWARMKEEPER_DOCKERFILE" \
		"${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/swarmkeeper" /usr/local/bin/swarmkeeper
	log "images $ETCD_IMAGE, $PG_CLIENT_IMAGE and $SWARMKEEPER_IMAGE are up to date"
}

main "$@"
