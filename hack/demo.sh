#!/usr/bin/env bash
# The demo: a private etcd, the example records with local images, apply, converge, drift, heal.
# Everything it starts is removed on exit; DEMO_KEEP=1 leaves the etcd and the stacks running.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

EXAMPLES="$REPO_ROOT/manifests/examples"
# Any image the examples name is replaced by the local busybox, which sleeps; the registry is real.
BUSYBOX_IMAGE=local/busybox:1
REGISTRY_IMAGE=local/registry:2

banner() { printf '\n\033[1m### %s\033[0m\n' "$*"; }
# show CMD...: prints the command, then runs it.
show() {
	printf '\033[2m$ %s\033[0m\n' "$*"
	"$@"
}

# The demo copy of the examples: images replaced, services kept alive with `sleep`, the example
# nodes (docker04, docker05) folded into this node, published ports moved when taken, the
# relative bind-mount sources the records name created empty beside them, and DatabaseUsers
# pointed at the local PostgreSQL with the demo's admin role (its password given as a literal).
make_demo_copy() {
	local src=$1 dest=$2 node
	node=$(docker node inspect self --format '{{.Description.Hostname}}')
	mkdir -p "$dest"
	/usr/bin/python3 - "$src" "$dest" "$node" "$BUSYBOX_IMAGE" "$REGISTRY_IMAGE" "$DEMO_PG_ADMIN" "$DEMO_PG_PASSWORD" <<'PY'
import glob, os, socket, sys
import yaml

src, dest, node, busybox, registry, pg_admin, pg_password = sys.argv[1:]

def port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False

taken = set()
def publish(port):
    port = int(port)
    if port not in taken and port_free(port):
        taken.add(port)
        return port
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        new = s.getsockname()[1]
    taken.add(new)
    print(f"    port {port} is in use or published twice; the demo publishes {new} instead", file=sys.stderr)
    return new

def local_image(image):
    return registry if image.split("/")[-1].startswith("registry:") else busybox

def demo_service(svc, folder):
    if local_image(svc["image"]) == busybox:
        svc["command"] = ["sleep", "infinity"]
        svc.pop("entrypoint", None)
        if "healthcheck" in svc:
            svc["healthcheck"] = {"disable": True}
    svc["image"] = local_image(svc["image"])
    ports = []
    for p in svc.get("ports", []):
        if isinstance(p, dict):
            if "published" in p:
                p["published"] = publish(p["published"])
        else:
            parts = str(p).split(":")
            if len(parts) == 2:
                parts[0] = str(publish(parts[0]))
            p = ":".join(parts)
        ports.append(p)
    if ports:
        svc["ports"] = ports
    for v in svc.get("volumes", []):
        source = v.get("source", "") if isinstance(v, dict) else str(v).split(":")[0]
        if source.startswith("."):
            path = os.path.join(folder, source)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "a").close()

node_done = False
admin_secrets = set()
paths = sorted(glob.glob(os.path.join(src, "*.yaml")))
for path in paths:
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if doc and doc.get("kind") == "DatabaseUser" and doc["spec"]["engine"] == "postgres":
                admin_secrets.add(doc["spec"]["server"]["adminPasswordSecret"])
for path in paths:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    out = []
    for doc in docs:
        kind, spec = doc.get("kind"), doc.get("spec") or {}
        if kind == "Node":
            if node_done:
                continue
            doc["metadata"]["name"] = node.lower()
            node_done = True
        elif kind == "Stack" and "compose" in spec:
            for svc in spec["compose"].get("services", {}).values():
                demo_service(svc, dest)
        elif kind == "DatabaseUser" and spec["engine"] == "postgres":
            spec["server"].update({"host": "127.0.0.1", "port": 5432, "adminUser": pg_admin, "sslMode": "require"})
        elif kind == "Secret" and doc["metadata"]["name"] in admin_secrets:
            doc["spec"] = {"value": {"literal": pg_password}}
        elif kind == "BackupJob":
            spec["image"] = busybox
            spec["command"] = ["sh", "-c", "echo backup of " + doc["metadata"]["name"] + " at $(date)"]
        elif kind == "Registry" and "deploy" in spec:
            spec["deploy"]["image"] = local_image(spec["deploy"]["image"])
            if "port" in spec["deploy"]:
                old, spec["deploy"]["port"] = spec["deploy"]["port"], publish(spec["deploy"]["port"])
                spec["address"] = spec.get("address", "").replace(f":{old}", f":{spec['deploy']['port']}")
        out.append(doc)
    with open(os.path.join(dest, os.path.basename(path)), "w") as f:
        yaml.safe_dump_all(out, f, sort_keys=False, default_flow_style=False)
PY
}

has_subcommand() { "$SWARMKEEPER" "$1" --help >/dev/null 2>&1; }

# Whether a `run --once` pass finds the record $1 (Kind/name) in phase $2 (whatever the
# other records do: a pass exits 1 while any of them fails).
converged_to() {
	local pass
	pass=$("$SWARMKEEPER" run --once 2>/dev/null) || true
	grep -q "^$1: $2" <<<"$pass"
}

# The private registry of the examples: deployed by its record, a push through
# `registry login`, and a stack that pulls from it with the auth the operator sends.
demo_registry() {
	has_subcommand registry || return 0
	banner "A private registry (Registry/private)"
	wait_for 90 "Registry/private to be Ready" converged_to Registry/private Ready ||
		die "the registry did not become Ready"
	show "$SWARMKEEPER" describe registry private
	local address image
	address=$("$SWARMKEEPER" get registry private -o json |
		/usr/bin/python3 -c 'import json, sys; d = json.load(sys.stdin); d = d[0] if isinstance(d, list) else d; print(d["spec"]["address"])')
	image="$address/demo/busybox:1"
	# A CI runner's login: the password comes from the store, never from a command line.
	export DOCKER_CONFIG="$WORK/docker"
	show "$SWARMKEEPER" registry login private
	show docker tag "$BUSYBOX_IMAGE" "$image"
	show docker push --quiet "$image"
	docker image rm "$image" >/dev/null
	cat >"$WORK/desired/06-from-registry.yaml" <<-YAML
		apiVersion: swarmkeeper.dev/v1alpha1
		kind: Stack
		metadata:
		  name: fromregistry
		spec:
		  compose:
		    version: "3.8"
		    services:
		      app:
		        image: $image
		        command: [sleep, infinity]
	YAML
	show "$SWARMKEEPER" apply -f "$WORK/desired/06-from-registry.yaml"
	wait_for 60 "Stack/fromregistry to be Ready" converged_to Stack/fromregistry Ready ||
		die "the stack did not pull from the registry"
	# Pinned to the pushed digest, pulled with the registry auth the operator sent.
	show docker service inspect fromregistry_app --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}'
	unset DOCKER_CONFIG
}

cleanup() {
	local rc=$?
	if [[ "${DEMO_KEEP:-}" == 1 ]]; then
		log "DEMO_KEEP=1: etcd keeps running on ${SWARMKEEPER_ETCD_ENDPOINTS:-} (data and key in $WORK)"
		log "stop it with: kill $(cat "$WORK/etcd/etcd.pid" 2>/dev/null)"
		exit "$rc"
	fi
	if [[ -n "${DEMO_APPLIED:-}" ]] && has_subcommand run; then
		log "removing what the demo created"
		"$SWARMKEEPER" delete -f "$WORK/desired" >/dev/null || warn "delete failed"
		"$SWARMKEEPER" run --once >/dev/null || warn "the pruning pass failed"
	fi
	stop_etcd "$WORK/etcd"
	drop_demo_databases
	# The registry's data volume outlives its record (it holds the images); the demo's goes
	# once the registry's container is gone.
	if [[ -n "${DEMO_APPLIED:-}" ]] && docker volume inspect registry_data >/dev/null 2>&1; then
		wait_for 20 "the registry's volume to be free" docker volume rm registry_data ||
			warn "volume registry_data is left"
	fi
	docker volume rm "$DEMO_BACKUPS" >/dev/null 2>&1 || true
	rm -rf "$WORK"
	exit "$rc"
}

# The local PostgreSQL role the demo's DatabaseUsers are made by (a CREATEROLE, CREATEDB role,
# not the superuser), with the users and databases the examples name.
DEMO_PG_ADMIN=swarmkeeper_demo
DEMO_PG_PASSWORD=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
demo_psql() { su postgres -c "psql -v ON_ERROR_STOP=1 -Atqc \"$1\"" >/dev/null; }
create_demo_admin() {
	demo_psql "DROP ROLE IF EXISTS $DEMO_PG_ADMIN" 2>/dev/null || true
	demo_psql "CREATE ROLE $DEMO_PG_ADMIN LOGIN CREATEROLE CREATEDB PASSWORD '$DEMO_PG_PASSWORD'"
}
drop_demo_databases() {
	# The examples keep their users (deletionPolicy: Retain), so the demo drops them itself.
	demo_psql "DROP DATABASE IF EXISTS kittenapi WITH (FORCE)" 2>/dev/null || true
	demo_psql "DROP DATABASE IF EXISTS kittenapi_restored" 2>/dev/null || true
	demo_psql "DROP ROLE IF EXISTS kittenapi" 2>/dev/null || true
	demo_psql "DROP ROLE IF EXISTS $DEMO_PG_ADMIN" 2>/dev/null || true
}

# A backup of the kittenapi database: a BackupJob that pg_dumps it into a volume (on the host
# network, which reaches the local PostgreSQL), started at once with `backup run`, then restored
# into a fresh database.
DEMO_BACKUPS=swarmkeeper-demo-backups
backup_and_restore() {
	local password
	password=$("$SWARMKEEPER" secret reveal kittenapi_db_password)
	PGPASSWORD=$password show psql -h 127.0.0.1 -U kittenapi -d kittenapi -v ON_ERROR_STOP=1 -Atqc \
		"CREATE TABLE IF NOT EXISTS kittens (name text); INSERT INTO kittens VALUES ('tom')"
	cat >"$WORK/desired/06-demo-backup.yaml" <<EOF
apiVersion: swarmkeeper.dev/v1alpha1
kind: BackupJob
metadata:
  name: kittenapi-dump
spec:
  schedule: "0 3 * * *"
  timeZone: Europe/Berlin
  image: local/postgres-client:15
  command:
    - sh
    - -c
    - PGPASSWORD=\$(cat /run/secrets/kittenapi_db_password) pg_dump --no-owner -h 127.0.0.1 -U kittenapi kittenapi > /backups/kittenapi-\$(date +%s).sql && ls -1t /backups/kittenapi-* | tail -n +4 | xargs -r rm
  secrets: [kittenapi_db_password]
  networks: [host]
  mounts:
    - {type: volume, source: $DEMO_BACKUPS, target: /backups}
  staleAfter: 26h
EOF
	show "$SWARMKEEPER" apply -f "$WORK/desired/06-demo-backup.yaml"
	"$SWARMKEEPER" run --once >/dev/null
	show "$SWARMKEEPER" backup run kittenapi-dump
	# `run --once` records the run in the history once its task ended.
	wait_for 60 "the backup run to succeed" backup_succeeded || die "the backup run did not succeed"
	show "$SWARMKEEPER" backup history kittenapi-dump
	demo_psql "CREATE DATABASE kittenapi_restored"
	docker run --rm -v "$DEMO_BACKUPS:/backups" local/postgres-client:15 sh -c 'cat $(ls -1t /backups/kittenapi-* | head -n 1)' |
		su postgres -c "psql -q -v ON_ERROR_STOP=1 -d kittenapi_restored" >/dev/null
	show su postgres -c "psql -d kittenapi_restored -c 'SELECT name FROM kittens'"
}

backup_succeeded() {
	"$SWARMKEEPER" run --once >/dev/null 2>&1
	"$SWARMKEEPER" backup history kittenapi-dump -o json | grep -q '"result": "Succeeded"'
}

main() {
	[[ -d "$EXAMPLES" ]] || die "no example records in $EXAMPLES"

	banner "Environment (hack/setup.sh)"
	"$REPO_ROOT/hack/setup.sh"

	banner "Build swarmkeeper (hack/images.sh: also its image, to run it in a swarm)"
	"$REPO_ROOT/hack/images.sh"
	SWARMKEEPER="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/swarmkeeper"

	WORK=$(mktemp -d -t swarmkeeper-demo.XXXXXX)
	trap cleanup EXIT
	trap 'exit 130' INT TERM

	banner "A private etcd"
	local port
	port=$(free_port)
	start_etcd "$WORK/etcd" "$port" >/dev/null
	export SWARMKEEPER_ETCD_ENDPOINTS="http://127.0.0.1:$port"
	export SWARMKEEPER_PREFIX=/swarmkeeper-demo
	# The operator's key: 32 random bytes, which encrypt the secret values it keeps in etcd.
	export SWARMKEEPER_SECRET_KEY_FILE="$WORK/secret.key"
	(umask 077 && head -c 32 /dev/urandom >"$SWARMKEEPER_SECRET_KEY_FILE")
	log "etcd at $SWARMKEEPER_ETCD_ENDPOINTS, prefix $SWARMKEEPER_PREFIX"

	banner "The example records, with local images and the local PostgreSQL"
	create_demo_admin
	make_demo_copy "$EXAMPLES" "$WORK/desired"
	show ls "$WORK/desired"

	banner "Apply"
	DEMO_APPLIED=1
	show "$SWARMKEEPER" apply -f "$WORK/desired"
	show "$SWARMKEEPER" get

	if ! has_subcommand run || ! has_subcommand drift; then
		log "this build has no controller yet (run, drift): the demo ends after apply and get"
		return 0
	fi

	banner "Converge"
	show "$SWARMKEEPER" run --once
	show "$SWARMKEEPER" get
	show docker stack services whoami
	# The kittenapi release no longer waits for someone to create its database user by hand.
	show "$SWARMKEEPER" describe databaseuser kittenapi
	show docker service inspect kittenapi_kittenapi --format '{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}} {{end}}'

	demo_registry
	banner "A backup, restored"
	backup_and_restore

	banner "Drift made by hand"
	show docker service scale --detach whoami_whoami=1
	show docker service update --detach --env-add DEMO=by-hand whoami_whoami
	# The whole report (records whose kinds have no controller yet wait, and say so)...
	show "$SWARMKEEPER" drift -o markdown || true
	# ...and the stack changed by hand, as a CI job would check it.
	local rc=0
	show "$SWARMKEEPER" drift stack whoami --exit-code || rc=$?
	[[ $rc -eq 2 ]] || die "drift should have been found (exit code 2), got $rc"

	banner "Heal"
	show "$SWARMKEEPER" run --once
	show "$SWARMKEEPER" drift stack whoami --exit-code
	show "$SWARMKEEPER" describe stack whoami
	log "demo done"
}

main "$@"
