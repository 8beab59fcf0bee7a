# Sourced by peers/<stack>/run: where builds go and how a C probe is built.
# Rebuilds only when the sources or the flags changed (a stamp holds their
# sha256). Exit codes follow the probe contract: 2 setup error, 3 missing tool.

PEERS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$PEERS_DIR/.." && pwd)

# missing WHAT HINT: the contract's exit 3 with one line on stderr.
missing() {
    echo "missing: $1 ($2)" >&2
    exit 3
}

# build_dir STACK: creates and prints the stack's build folder.
build_dir() {
    local dir="${UMLAB_PEER_BUILD:-$REPO_DIR/target/peers}/$1"
    mkdir -p "$dir" || { echo "cannot create $dir" >&2; exit 2; }
    printf '%s\n' "$dir"
}

# build_c STACK OUT "CFLAGS" "LIBS" SOURCE...: compiles SOURCEs into OUT
# when they (or the flags) changed since the last build.
build_c() {
    local stack=$1 out=$2 cflags=$3 libs=$4
    shift 4
    command -v gcc >/dev/null 2>&1 || missing gcc "apt-get install gcc"
    local stamp
    stamp=$( { printf '%s\n%s\n' "$cflags" "$libs"; cat "$@" "$PEERS_DIR/common/probe.h"; } | sha256sum | cut -d' ' -f1)
    if [[ -x "$out" && -f "$out.stamp" && "$(cat "$out.stamp")" == "$stamp" ]]; then
        return 0
    fi
    local log="$out.build.log"
    # shellcheck disable=SC2086
    if ! gcc -std=c11 -O2 -Wall -Wextra -Werror -I"$PEERS_DIR/common" $cflags \
        -o "$out.tmp" "$@" $libs >"$log" 2>&1; then
        cat "$log" >&2
        echo "build of the $stack probe failed (log: $log)" >&2
        exit 2
    fi
    mv -f "$out.tmp" "$out"
    printf '%s\n' "$stamp" >"$out.stamp"
}
