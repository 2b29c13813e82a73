# Sourced by scripts/dev and scripts/test: the project's virtual environment in .venv,
# made with `python3` (Debian's own will do: it refuses `pip install` outside a virtual
# environment, PEP 668) or with $PYTHON, and brought up to date with what it needs.
#   venv_ready EXTRAS   e.g. venv_ready '.[dev]'
set -euo pipefail

MERCI_VENV="${MERCI_VENV:-.venv}"

venv_ready() {
  local python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Merci needs Python 3.11 or newer; '$python' is $("$python" --version 2>&1)." >&2
    echo "Install it (Debian 12: apt-get install python3 python3-venv) or set PYTHON=/path/to/python3.11" >&2
    return 1
  fi
  if [ ! -x "$MERCI_VENV/bin/python" ]; then
    if ! "$python" -m venv "$MERCI_VENV"; then
      echo "Could not make a virtual environment: on Debian, apt-get install python3-venv" >&2
      return 1
    fi
  fi
  # Installs only what changed since the last run (pip skips what is there already).
  "$MERCI_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
  "$MERCI_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$1"
  export PATH="$PWD/$MERCI_VENV/bin:$PATH"
  export VIRTUAL_ENV="$PWD/$MERCI_VENV"
}
