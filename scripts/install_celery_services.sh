#!/usr/bin/env bash
# Make sure Redis and PostgreSQL are there for `make test-celery`, from the distribution's packages only
# (the test starts its own throwaway instances of both on free ports; it never uses a system service).
set -euo pipefail
have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
if command -v redis-server >/dev/null 2>&1 && have_postgres; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "Installing redis-server and postgresql with apt-get (Debian/Ubuntu packages)" >&2
    $sudo apt-get update -qq
    # policy-rc.d 101: apt installs the packages without starting their system services.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server postgresql
    exit 0
fi
cat >&2 <<'MESSAGE'
make test-celery needs redis-server and PostgreSQL (initdb and pg_ctl under /usr/lib/postgresql/*/bin),
and installs them only with apt-get (Debian/Ubuntu). Install both with your package manager, then rerun.
MESSAGE
exit 1
