#!/usr/bin/env bash
# install_test_tools.sh — installs the system tools `make test` needs beyond Python:
#   podman, runc, catatonit  tests/test_docker_runner.py (a real container engine)
#   faketime                 tests/test_e2e_dst.py (the real daemon across DST nights)
#   systemd-analyze          tests/test_systemd.py (`verify` and `security` of the unit)
#   chromium, chromedriver   tests/test_e2e_web_browser.py (the web UI in a real headless browser)
#
# Idempotent and quiet: does nothing when every tool is there; otherwise one
# `apt-get update` + `apt-get install` of the missing packages (Debian bookworm: ~10 s),
# as root or through sudo. Prints one line saying what it did; the apt output goes to
# a log that is printed only on failure. Exits non-zero only when the install itself
# fails, never because this machine is not Debian: there it says so and exits 0, and
# the tests that need a missing tool skip, naming it.
#
# Why runc: Debian's podman 4.3 defaults to crun, which fails on these machines;
# the tests run podman with the runc runtime (measured on Debian bookworm, podman 4.3).
# Why catatonit: the docker runner starts containers with `run --init`, and
# podman's init binary is catatonit (only a Recommends of the podman package).
# Why faketime: libfaketime starts the real daemon at a chosen instant (a DST night)
# and steps its wall clock, which no Python-level fake can do to a separate process.
# Why systemd: the unit's own checker and its exposure rating come with it (package
# systemd; nothing is started: the tests run it offline on a copy of the unit).
# Why chromium from Debian: the browser test drives it with Selenium through Debian's
# chromedriver; no browser or driver is downloaded at test time (none could be).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

# command → Debian package (the same names today; kept apart so a rename is one line).
declare -A package_of=([podman]=podman [runc]=runc [catatonit]=catatonit [faketime]=faketime
  [systemd-analyze]=systemd [chromium]=chromium [chromedriver]=chromium-driver)
tools=(podman runc catatonit faketime systemd-analyze chromium chromedriver)

missing=()
for tool in "${tools[@]}"; do
  have "$tool" || missing+=("${package_of[$tool]}")
done
if ((${#missing[@]} == 0)); then
  echo "install_test_tools: ${tools[*]} already installed"
  exit 0
fi
if ! have apt-get; then
  echo "install_test_tools: no apt-get on this machine: install ${missing[*]} yourself (the tests that need them skip)"
  exit 0
fi
sudo=()
if ((EUID != 0)); then
  if ! have sudo; then
    echo "install_test_tools: not root and no sudo: install ${missing[*]} yourself (the tests that need them skip)"
    exit 0
  fi
  sudo=(sudo -n)
fi

log=$(mktemp "${TMPDIR:-/tmp}/install_test_tools.XXXXXX.log")
trap 'rm -f -- "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { "${sudo[@]}" apt-get update -q && "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat -- "$log" >&2
  echo "install_test_tools: apt-get failed (output above)" >&2
  exit 1
fi
echo "install_test_tools: installed ${missing[*]}"
