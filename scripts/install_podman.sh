#!/usr/bin/env bash
# install_podman.sh — kept for the hints that name it: installs podman, runc and catatonit
# (and the other test tools) through install_test_tools.sh, which `make test` calls.
set -euo pipefail
exec bash "$(dirname -- "${BASH_SOURCE[0]}")/install_test_tools.sh" "$@"
