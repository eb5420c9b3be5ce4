#!/usr/bin/env bash
# `make test`'s stages, each run to its end even when an earlier one failed, so that one
# failing stage never hides what the others would have said; the exit status is non-zero when
# any failed, and the last lines name each stage that failed.
#   usage: scripts/test-stages.sh PYTHON [PYTEST_ARGS...]
#   LABKIT_SKIP_VM=1 skips the VM stage (and says so), e.g. where qemu is too slow to wait for.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=$1; shift
failed=()
stage() {  # stage NAME CMD...: run CMD, remember NAME if it fails
  local name=$1; shift
  printf '\n\033[1;34m[make test]\033[0m stage: %s\n' "$name"
  "$@" || failed+=("$name (exit $?)")
}

stage "host suite: pytest --privileged tests" "$PY" -m pytest --privileged tests "$@"
if [ "${LABKIT_SKIP_VM:-0}" = 1 ]; then
  echo "make test: LABKIT_SKIP_VM=1, skipping the VM tests (tests/vm)"
elif command -v qemu-system-x86_64 >/dev/null; then
  stage "VM suite: make test-vm" make --no-print-directory test-vm
else
  echo "make test: no qemu-system-x86_64, skipping the VM tests (tests/vm)"
fi
stage "notebooks: nbval" env LABKIT_EXERCISES_STRICT=1 "$PY" -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider \
  --nbval-sanitize-with notebooks/sanitize.cfg notebooks/

if ((${#failed[@]})); then
  printf '\n\033[1;31m[make test]\033[0m %d stage(s) failed:\n' "${#failed[@]}"
  printf '  - %s\n' "${failed[@]}"
  exit 1
fi
printf '\n\033[1;32m[make test]\033[0m every stage passed\n'
