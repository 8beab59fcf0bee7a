#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30), one after the other,
# one process each, starting from a temporary copy of the committed seeds so
# the corpus the run grows is never committed. Exits non-zero when any target
# crashes, leaks, times out or runs out of memory; the input that did it is in
# fuzz/artifacts/TARGET/ (see fuzz/README.md to reproduce it).
#
# Outside CI a missing nightly toolchain or cargo-fuzz skips the run with the
# reason; with CI=true a missing nightly fails and cargo-fuzz is installed.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
set -uo pipefail

# All in one function, so bash has read the whole script before running it.
main() {

    seconds="${1:-30}"
    shift || true
    case "$seconds" in
        '' | *[!0-9]*) echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
    esac
    here="$(cd "$(dirname "$0")" && pwd)"
    root="$(dirname "$here")"
    cd "$root" || exit 2
    targets=("$@")
    if [ ${#targets[@]} -eq 0 ]; then
        targets=(smtp_session um_header um_reply tls_flight store_load probe_flight)
    fi

    ci=false
    [ "${CI:-}" = "true" ] && ci=true

    if ! cargo +nightly --version >/dev/null 2>&1; then
        if $ci; then
            echo "fuzz: FAILED: no nightly toolchain (cargo +nightly); cargo-fuzz needs it for the sanitizers" >&2
            exit 1
        fi
        echo "fuzz: skipped: no nightly toolchain (install it with: rustup toolchain install nightly)"
        exit 0
    fi
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        if $ci; then
            echo "fuzz: installing cargo-fuzz"
            cargo install cargo-fuzz --locked || { echo "fuzz: FAILED: cargo install cargo-fuzz" >&2; exit 1; }
        else
            echo "fuzz: skipped: cargo-fuzz is not installed (install it with: cargo install cargo-fuzz --locked)"
            exit 0
        fi
    fi

    # The machine is shared: one compiler job unless told otherwise.
    export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
    start=$(date +%s)
    echo "fuzz: building ${targets[*]}"
    for t in "${targets[@]}"; do
        if ! cargo +nightly fuzz build "$t"; then
            echo "fuzz: FAILED: build of $t" >&2
            exit 1
        fi
    done
    echo "fuzz: built in $(( $(date +%s) - start )) s"

    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    failed=()
    summary=()
    for t in "${targets[@]}"; do
        corpus="$work/$t"
        mkdir -p "$corpus"
        if [ -d "$here/corpus/$t" ]; then
            cp "$here/corpus/$t/"* "$corpus/" 2>/dev/null || true
        fi
        seeds=$(find "$corpus" -type f | wc -l)
        log="$work/$t.log"
        echo "fuzz: $t for ${seconds} s from $seeds seeds"
        # Longer inputs where a cap is that far in: um-sim's reply reader caps a
        # reply at 64 KiB.
        extra=()
        [ "$t" = um_reply ] && extra=(-max_len=70000)
        cargo +nightly fuzz run "$t" "$corpus" -- \
            -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            "${extra[@]}" >"$log" 2>&1
        rc=$?
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
        size=$(find "$corpus" -type f | wc -l)
        if [ $rc -ne 0 ]; then
            failed+=("$t")
            echo "fuzz: $t FAILED (exit $rc); the end of its log:"
            tail -n 40 "$log"
            summary+=("$(printf '%-13s %12s %8s %8s  CRASH (exit %s)' "$t" "${runs:--}" "${rate:--}" "$size" "$rc")")
        else
            summary+=("$(printf '%-13s %12s %8s %8s  ok' "$t" "${runs:--}" "${rate:--}" "$size")")
        fi
    done

    echo
    printf '%-13s %12s %8s %8s  %s\n' target executions exec/s corpus result
    for line in "${summary[@]}"; do
        echo "$line"
    done
    echo "fuzz: total $(( $(date +%s) - start )) s"
    if [ ${#failed[@]} -gt 0 ]; then
        echo "fuzz: FAILED: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
        echo "fuzz: $(( ${#targets[@]} - ${#failed[@]} )) passed, ${#failed[@]} failed"
        exit 1
    fi
    echo "fuzz: ${#targets[@]} passed, 0 failed"
}

main "$@"
exit
