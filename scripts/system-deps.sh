#!/usr/bin/env bash
# Debian packages the test suite needs (servers and a browser that tests start).
# Called by .ci/run (all of them) and by `make demo` (only mosquitto, given as argument);
# safe to run again. Add packages here, never in tests.
set -euo pipefail
PACKAGES=(mosquitto chromium postgresql)
if [ $# -gt 0 ]; then PACKAGES=("$@"); fi
if [ ${#PACKAGES[@]} -gt 0 ]; then
  missing=()
  for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
fi
