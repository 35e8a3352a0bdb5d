# Sourced by ./soiree and ./test (not run on its own): makes sure the repo's .venv exists
# and is current, and that redis-server is installed, so a fresh clone needs no setup step.
# Messages go to stderr: `./soiree results --json` must keep stdout clean.

SOIREE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SOIREE_VENV="$SOIREE_ROOT/.venv"

_soiree_python() {
    local candidate
    for candidate in "${SOIREE_PYTHON:-}" python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "soiree: Python 3.11 is required (no python3.11 on PATH; set SOIREE_PYTHON to one)" >&2
    return 1
}

# (Re)install when the venv is missing, broken, or older than pyproject.toml.
if [ ! -f "$SOIREE_VENV/.installed" ] || [ "$SOIREE_ROOT/pyproject.toml" -nt "$SOIREE_VENV/.installed" ] ||
    ! "$SOIREE_VENV/bin/python" -c '' >/dev/null 2>&1; then
    echo "soiree: installing into .venv (first run or pyproject.toml changed; about a minute)..." >&2
    if ! "$SOIREE_VENV/bin/python" -c '' >/dev/null 2>&1; then
        soiree_python="$(_soiree_python)" || exit 1
        "$soiree_python" -m venv --clear "$SOIREE_VENV"
    fi
    if ! "$SOIREE_VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$SOIREE_ROOT[test]" \
        >"$SOIREE_VENV/install.log" 2>&1; then
        cat "$SOIREE_VENV/install.log" >&2
        echo "soiree: pip install failed (log above, also in .venv/install.log)" >&2
        exit 1
    fi
    touch "$SOIREE_VENV/.installed"
fi

# Redis is started locally by `soiree up` / the tests; install the server if we can.
if ! command -v redis-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "soiree: installing redis-server with apt-get..." >&2
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }; } \
        >/tmp/soiree-apt.log 2>&1; then
        echo "soiree: apt-get install redis-server failed (see /tmp/soiree-apt.log); continuing" >&2
    fi
fi
