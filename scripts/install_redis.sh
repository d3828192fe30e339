#!/usr/bin/env bash
# Make sure redis-server is there for the tests of the shared rate limit (tests/test_ratelimit_redis.py),
# from the distribution's packages only. The tests start their own throwaway instance on a free port;
# they never use a system service.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "Installing redis-server with apt-get (Debian/Ubuntu package)" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server
    exit 0
fi
echo "The shared rate limit's tests need redis-server, installed here only with apt-get (Debian/Ubuntu);" \
    "install it with your package manager, or they are skipped." >&2
exit 0
