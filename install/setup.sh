#!/usr/bin/env bash
# Set up neural-mirage in .venv at the repository root. Safe to run again: it only reinstalls
# when pyproject.toml or constraints.txt changed.
#   install/setup.sh          the program
#   install/setup.sh --test   also the test tools, and the system packages the editor tests need
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
if [ "${1:-}" = "--test" ]; then
    extra="[test]"
    bash install/test-hosts.sh
fi
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.neural-mirage-installed
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)$extra"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "Installing neural-mirage$extra into .venv (torch is large: this takes a minute or two)..."
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        -c constraints.txt -e ".$extra" 2> >(grep -v "^WARNING: Location" >&2)
    echo "$want" > "$stamp"
fi
