#!/usr/bin/env bash
# Install everything this project needs on a fresh Debian machine with
# Python 3.11: system packages (Chromium for the browser tests, poppler for
# reading PDFs in tests, gettext for translations) and a virtual environment
# in .venv with the pinned Python packages. Safe to run again: each step is
# skipped when its result is already in place.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

system_packages=(chromium poppler-utils gettext)
python=${PYTHON:-python3.11}

install_system_packages() {
    local missing=()
    for package in "${system_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    echo "setup: installing system packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_python_packages() {
    if ! command -v "$python" >/dev/null; then
        echo "setup: $python not found; install Python 3.11 or set PYTHON to its path" >&2
        exit 2
    fi
    [ -x .venv/bin/python ] || "$python" -m venv .venv

    # The stamp holds the hash of the files that decide what gets installed,
    # so an unchanged checkout skips pip entirely.
    local stamp=.venv/.installed
    local wanted
    wanted=$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
        return 0
    fi

    echo "setup: installing Python packages into .venv (about two minutes the first time)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -c requirements/constraints.txt -e '.[agent,portal,test]'
    echo "$wanted" > "$stamp"
}

install_system_packages
install_python_packages
