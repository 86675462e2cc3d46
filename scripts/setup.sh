#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian machine (idempotent; run as root,
# or with sudo available). Called by scripts/test.sh; safe to run by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v gcc >/dev/null || need_apt+=(gcc g++)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
# Component-specific setup scripts (e.g. the code sandbox) live beside this one.
for s in scripts/setup-*.sh; do
  [ -e "$s" ] && bash "$s"
done
exit 0
