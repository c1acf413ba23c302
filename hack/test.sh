#!/usr/bin/env bash
# The whole check CI runs (through .ci/run): environment setup, formatting, lints, every test.
# Each step stops the run on failure, naming the step.
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

step() {
	local name=$1
	shift
	log "$name"
	local start=$SECONDS
	"$@" || die "step failed: $name (command: $*)"
	log "$name: ok ($((SECONDS - start))s)"
}

tests() {
	if cargo nextest --version >/dev/null 2>&1; then
		# nextest does not run doc tests. (`&&`, not a new line: set -e is off inside `f || die`.)
		cargo nextest run --no-fail-fast && cargo test --doc
	else
		warn "cargo-nextest is not installed; running cargo test"
		cargo test --no-fail-fast
	fi
}

step "setup (hack/setup.sh)" "$REPO_ROOT/hack/setup.sh"
# tests/in_swarm.rs deploys manifests/swarmkeeper.yml, which runs these images.
step "images (hack/images.sh)" "$REPO_ROOT/hack/images.sh"
step "format check (cargo fmt --check)" cargo fmt --check
step "lints (cargo clippy --all-targets -- -D warnings)" cargo clippy --all-targets -- -D warnings
step "tests" tests
log "all checks passed"
