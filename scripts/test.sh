#!/usr/bin/env bash
# Install what the tests need (apt and pip, into .venv) and run the whole suite.
# Run as root on Debian/Ubuntu: the tests mount overlays and start dockyardd.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
apt_packages=(busybox-static skopeo runc libseccomp2 iproute2 nftables procps util-linux curl binutils gcc libc6-dev python3-venv docker-registry docker-compose)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    # no service may start while packages install: docker-registry's would listen on :5000
    # and outlive the run (the tests start registries of their own on free ports)
    policy=/usr/sbin/policy-rc.d
    ours=""
    if [ ! -e "$policy" ]; then  # a host's own policy is left as it is
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        ours=$policy
        trap 'rm -f "$ours"' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$ours" ]; then
        rm -f "$ours"
        trap - EXIT
    fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# bytecode for the runtime CLI's start-up (PYTHONDONTWRITEBYTECODE may be set)
.venv/bin/python -m compileall -q dockyard

.venv/bin/ruff check dockyard tests bench
exec .venv/bin/python -m pytest -q -ra "$@"
