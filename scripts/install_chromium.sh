#!/usr/bin/env bash
# Make sure a Chromium and its chromedriver are there for `make test-browser`, from the distribution's
# packages only (the tests never download a browser). CHROMIUM and CHROMEDRIVER may name them instead.
set -euo pipefail
have() { [ -n "${!1:-}" ] || command -v "$2" >/dev/null 2>&1; }
if have CHROMIUM chromium && have CHROMEDRIVER chromedriver; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "Installing chromium and chromium-driver with apt-get (Debian/Ubuntu packages)" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver
    exit 0
fi
cat >&2 <<'MESSAGE'
make test-browser needs Chromium and a matching chromedriver, and installs them only with apt-get
(Debian/Ubuntu). Install both with your package manager (e.g. `dnf install chromium chromedriver`,
`brew install --cask chromium chromedriver`), or point CHROMIUM and CHROMEDRIVER at them, then rerun.
MESSAGE
exit 1
