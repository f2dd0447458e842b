# shellcheck shell=bash
# setup.sh — sourced by scripts/test and scripts/demo: installs the Debian packages zmesh needs
# (only those missing, so it is idempotent and quiet on a ready machine), then configures and
# builds into a build directory.

zmesh_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

zmesh_packages=(g++ cmake make pkg-config libzmq3-dev cppzmq-dev libmsgpack-cxx-dev
                libboost-program-options-dev doctest-dev python3-zmq libsqlite3-dev
                libtomlplusplus-dev libcpp-httplib-dev nlohmann-json3-dev prometheus chromium
                libpq-dev postgresql)

zmesh_ensure_packages() {
    local missing=()
    for p in "${zmesh_packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "zmesh: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# zmesh_build <build-dir> [cmake args...]
zmesh_build() {
    local dir=$1
    shift
    cmake -S "$zmesh_root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$dir" -j "$(nproc)"
}
