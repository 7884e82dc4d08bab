# Shared by scripts/serve and scripts/test (sourced, from the repository root).
can_apt() { [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; }
apt_updated=""
apt_install() {
    [[ -n $apt_updated ]] || { apt-get update -q; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

python_ok() {  # is $1 a Python 3.10 or 3.11?
    "$1" -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 10), (3, 11)))' 2>/dev/null
}

# setup_venv EXTRAS: pick a Python that Spyne 2.14 imports on (3.10 or 3.11), build .venv
# with it and install the project (with EXTRAS, e.g. "[test]").
setup_venv() {
    local python="" candidate
    for candidate in python3.11 python3.10 python3; do
        if command -v "$candidate" >/dev/null && python_ok "$candidate"; then
            python=$candidate
            break
        fi
    done
    if [[ -z $python ]]; then
        echo "eventgw: need Python 3.10 or 3.11 (Spyne 2.14 does not import on 3.12+)" >&2
        echo "  install python3.11 (e.g. apt-get install python3.11-venv) and re-run" >&2
        exit 1
    fi

    if [[ ! -x .venv/bin/python ]] || ! python_ok .venv/bin/python; then
        echo "eventgw: creating .venv with $("$python" --version 2>&1)" >&2
        rm -rf .venv
        # Debian ships venv/ensurepip separately, as python3.X-venv.
        if ! "$python" -c 'import ensurepip, venv' 2>/dev/null && can_apt; then
            apt_install "$python-venv"
        fi
        "$python" -m venv .venv
    fi
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".${1:-}"
}
