# Shared by scripts/serve and scripts/test (sourced, from the repository root).

# The Python versions setup.cfg declares (3.10 to 3.13), by minor number, newest first.
SUPPORTED_MINORS=(13 12 11 10)

can_apt() { [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; }
apt_updated=""
apt_install() {
    [[ -n $apt_updated ]] || { apt-get update -q; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

python_minor() {  # the X of Python 3.X that $1 runs, or a failure when $1 does not run
    "$1" -c 'import sys; assert sys.version_info[0] == 3; print(sys.version_info[1])' 2>/dev/null
}

python_supported() {  # does $1 run a Python version setup.cfg declares?
    local minor
    minor=$(python_minor "$1") && [[ " ${SUPPORTED_MINORS[*]} " == *" $minor "* ]]
}

python_version() {  # "3.X.Y" of interpreter $1
    "$1" -c 'import platform; print(platform.python_version())'
}

# find_python MINOR: the path of a working Python 3.MINOR: python3.MINOR on PATH, else the
# newest of pyenv's (pyenv's shims refuse versions that are not selected, so they are tried
# and passed over). Fails when there is none.
find_python() {
    local minor=$1 candidate root
    if candidate=$(command -v "python3.$minor") && [[ $(python_minor "$candidate") == "$minor" ]]; then
        echo "$candidate"
        return 0
    fi
    root=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}
    while read -r candidate; do
        if [[ -n $candidate && $(python_minor "$candidate") == "$minor" ]]; then
            echo "$candidate"
            return 0
        fi
    done < <(compgen -G "$root/versions/3.$minor.*/bin/python" | sort -V -r)
    return 1
}

# default_python: the Python .venv is built with: python3 when it is a supported version,
# else the newest supported one found.
default_python() {
    local minor
    if command -v python3 >/dev/null && python_supported python3; then
        command -v python3
        return 0
    fi
    for minor in "${SUPPORTED_MINORS[@]}"; do
        find_python "$minor" && return 0
    done
    return 1
}

# setup_venv EXTRAS: build .venv on a supported Python unless it has one, and install the
# project editable (with EXTRAS, e.g. "[test]"). pip runs only when setup.cfg or
# pyproject.toml changed since the last install, or EXTRAS were not installed yet.
setup_venv() {
    local extras=${1:-} python digest installed=""
    if [[ ! -x .venv/bin/python ]] || ! python_supported .venv/bin/python; then
        if ! python=$(default_python); then
            echo "eventgw: need Python 3.10, 3.11, 3.12 or 3.13" >&2
            echo "  install one (e.g. apt-get install python3-venv) and re-run" >&2
            exit 1
        fi
        echo "eventgw: creating .venv with Python $(python_version "$python")" >&2
        rm -rf .venv
        # Debian ships venv/ensurepip separately, as python3.X-venv.
        if ! "$python" -c 'import ensurepip, venv' 2>/dev/null && can_apt; then
            apt_install "python3.$(python_minor "$python")-venv"
        fi
        "$python" -m venv .venv
    fi

    digest=$({ cat setup.cfg pyproject.toml; pwd; } | sha256sum | cut -d' ' -f1)
    [[ -f .venv/.eventgw-installed ]] && installed=$(<.venv/.eventgw-installed)
    if [[ $installed == "$digest $extras" || (-z $extras && $installed == "$digest "*) ]]; then
        return 0
    fi
    echo "eventgw: installing the project into .venv${extras:+ with $extras}" >&2
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".$extras"
    echo "$digest $extras" >.venv/.eventgw-installed
}
