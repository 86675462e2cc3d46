#!/usr/bin/env bash
# Headless Chromium for the report's browser test (tests/report_browser.rs renders a report's
# index.html and checks that every figure loads and nothing is blank); idempotent, run as root.
# Without it that test skips visibly, unless MIXPROBE_REQUIRE_BROWSER=1 (CI), where it fails.
set -euo pipefail

if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup-chromium: chromium is missing; run this script as root to install it" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
echo "setup-chromium: $(chromium --version 2>/dev/null || echo 'chromium (version unknown)') at $(command -v chromium)"
