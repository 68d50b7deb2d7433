# Sourced by dashboard.sh and test.sh: the project's virtual environment .venv, made with
# Python >= 3.11 ($PYTHON, else python3), with this project installed in it (editable).
#   install_into_venv EXTRAS     EXTRAS: "" for the dashboard, "test,ray" for the tests

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_into_venv() {
    local python=${PYTHON:-python3}
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "DiveBatch Lab needs Python 3.11 or newer; $python is $("$python" --version 2>&1)." \
             "Set PYTHON=/path/to/python3.11 (or newer)." >&2
        exit 1
    fi
    if [ ! -x .venv/bin/python ]; then
        # Debian's python3 makes virtual environments only with its python3-venv package.
        "$python" -m venv .venv 2>/dev/null || {
            rm -rf .venv
            as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
            "$python" -m venv .venv
        }
    fi
    .venv/bin/python -m pip install --quiet --editable ".${1:+[$1]}"
}
