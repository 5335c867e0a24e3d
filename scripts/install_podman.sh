#!/usr/bin/env bash
# install_podman.sh — installs podman, runc and catatonit for tests/test_docker_runner.py.
#
# Idempotent and quiet: does nothing when all three are there; otherwise one
# `apt-get update` + `apt-get install` (Debian bookworm: podman 4.3, ~10 s), as
# root or through sudo. Prints one line saying what it did; the apt output goes to
# a log that is printed only on failure. Exits non-zero only when the install
# itself fails, never because this machine is not Debian: there it says so and
# exits 0, and the container tests skip.
#
# Why runc: Debian's podman 4.3 defaults to crun, which fails on these machines;
# the tests run podman with the runc runtime (../shared/NOTES.md, "Containers").
# Why catatonit: the docker runner starts containers with `run --init`, and
# podman's init binary is catatonit (only a Recommends of the podman package).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

packages=(podman runc catatonit)
if have podman && have runc && have catatonit; then
  echo "install_podman: podman $(podman --version | awk '{print $NF}'), runc and catatonit already installed"
  exit 0
fi
if ! have apt-get; then
  echo "install_podman: no apt-get on this machine: install podman, runc and catatonit yourself (the container tests skip without them)"
  exit 0
fi
sudo=()
if ((EUID != 0)); then
  if ! have sudo; then
    echo "install_podman: not root and no sudo: install podman, runc and catatonit yourself (the container tests skip without them)"
    exit 0
  fi
  sudo=(sudo -n)
fi

log=$(mktemp "${TMPDIR:-/tmp}/install_podman.XXXXXX.log")
trap 'rm -f -- "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { "${sudo[@]}" apt-get update -q && "${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"; } >"$log" 2>&1; then
  cat -- "$log" >&2
  echo "install_podman: apt-get failed (output above)" >&2
  exit 1
fi
echo "install_podman: installed podman $(podman --version | awk '{print $NF}'), runc and catatonit"
