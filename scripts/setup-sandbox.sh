#!/usr/bin/env bash
# System requirements of the code sandbox (src/eval/sandbox.rs); idempotent, run as root.
# The sandbox needs only a system python3 that an unprivileged uid can execute (a pyenv shim under
# /root will not do: /root is private and hidden in the sandbox) and a kernel that allows mount,
# PID and network namespaces (any Linux >= 3.8; some container runtimes forbid them). It creates
# no users: programs run as uids 1900000000 and up, which need not exist in /etc/passwd.
set -euo pipefail

if [ ! -x /usr/bin/python3 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup-sandbox: /usr/bin/python3 is missing; run this script as root to install it" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 >/dev/null
fi
echo "setup-sandbox: $(/usr/bin/python3 --version) at /usr/bin/python3"

if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null; then
    if unshare --mount --pid --net --fork true 2>/dev/null; then
        echo "setup-sandbox: namespaces available"
    else
        echo "setup-sandbox: WARNING: this kernel/container forbids namespaces; the sandbox will refuse to run" >&2
    fi
fi
