#!/usr/bin/env bash
# Install what the browser test (tests/report/test_report_browser.py, marker `browser`) needs:
#   * Debian's Chromium (/usr/bin/chromium) and its driver (/usr/bin/chromedriver),
#   * the Python `playwright` package, used only as a driver: it is pointed at /usr/bin/chromium
#     (`executable_path`), so `playwright install` (which downloads a browser) is never run.
# Idempotent; run as root (CI) or with sudo. Usage: bash scripts/install_browser.sh
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"
    elif [ ! -x /usr/bin/chromium ]; then
        echo "install_browser.sh: not root and no password-less sudo: Chromium not installed;" \
             "the browser test will skip and say so (the other tests run)." >&2
        exit 0
    fi
fi

if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
else
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core
    echo "installed: $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium ?')"
fi

PY="${PYTHON:-python3}"
if "$PY" -c "import playwright" 2>/dev/null; then
    echo "playwright (python) already installed"
else
    "$PY" -m pip install -q "playwright>=1.45,<2"
fi
"$PY" - <<'PYEOF'
from importlib.metadata import version
print("playwright", version("playwright"))
PYEOF
