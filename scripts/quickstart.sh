#!/usr/bin/env bash
# On a fresh Debian/Ubuntu machine, as root: install dockyard, start dockyardd, build a
# busybox image from the host's static busybox, import it and list it.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends busybox-static python3-venv python3-pip >/dev/null
python3 -m venv /opt/dockyard
/opt/dockyard/bin/pip install -q --disable-pip-version-check .
# bytecode for the runtime CLI's start-up (pip compiles the installed copy; this is the tree)
/opt/dockyard/bin/python -m compileall -q dockyard
ln -sf /opt/dockyard/bin/dockyard /opt/dockyard/bin/dockyardd /usr/local/bin/

if ! dockyard version >/dev/null 2>&1; then
    nohup dockyardd >/var/log/dockyardd.log 2>&1 &
    for _ in $(seq 100); do dockyard version >/dev/null 2>&1 && break; sleep 0.1; done
fi

contrib/mkrootfs-busybox - | dockyard import -c 'CMD ["sh"]' - busybox:latest
dockyard run --rm busybox echo hello
dockyard images
