#!/usr/bin/env bash
# Writes the seeds of store_load and tls_flight under fuzz/corpus/ from real
# certificates and real lab-server flights. Builds certgen and lab-server
# (debug, at the repository root) if they are not built; needs openssl and
# python3. Run from anywhere.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
corpus="$here/../corpus"
cd "$root"
CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo build --quiet --bin certgen --bin lab-server
bin="$root/target/debug"
tmp="$(mktemp -d)"
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

"$bin/certgen" pki --out "$tmp/pki" --seed 1 >/dev/null
"$bin/certgen" roots --count 3 --seed 7 --out "$tmp/roots" >/dev/null
"$bin/certgen" roots --count 60 --seed 7 --out "$tmp/roots60" >/dev/null
openssl crl2pkcs7 -nocrl -certfile "$tmp/roots/roots.pem" -certfile "$tmp/pki/ca.pem" \
    -outform DER -out "$tmp/bundle.p7b"
openssl crl2pkcs7 -nocrl -certfile "$tmp/roots/roots.pem" -out "$tmp/bundle-pem.p7b"
openssl x509 -in "$tmp/pki/ca.pem" -outform DER -out "$tmp/ca.der"

# store_load: first byte picks the extension (0 .pem, 1 .crt, 2 .der, 3 .cer,
# 4 .p7b, 5 .p7c, 6 .sst; see fuzz_targets/store_load.rs).
s="$corpus/store_load"
mkdir -p "$s"
seed() { { printf "\\x$(printf %02x "$1")"; cat "$2"; } > "$s/$3"; }
seed 0 "$tmp/roots/roots.pem" roots3.pem
seed 1 "$tmp/pki/hub.pem" hub-chain.crt
seed 2 "$tmp/ca.der" ca.der
seed 4 "$tmp/bundle.p7b" bundle.p7b
seed 5 "$tmp/bundle-pem.p7b" bundle-pem.p7c
{ echo "# a comment line"; cat "$tmp/pki/ca.pem"; echo "text between blocks"; cat "$tmp/pki/um.pem"; } \
    > "$tmp/mixed.pem"
seed 0 "$tmp/mixed.pem" mixed.pem
python3 "$here/sst_seed.py" 6 "$s/roots3-ca.sst" "$tmp/roots/roots.pem" "$tmp/pki/ca.pem"

# tls_flight: 6 settings bytes (layout, max_fragment, cuts; see
# fuzz_targets/tls_flight.rs), then what lab-server sent after its STARTTLS 220.
capture() { # NAME LAYOUT STORE [lab-server options...]
    local name="$1" layout="$2" store="$3"
    shift 3
    local port=$((20000 + RANDOM % 20000))
    "$bin/lab-server" --listen "127.0.0.1:$port" --store "$store" \
        --cert "$tmp/pki/hub.pem" --key "$tmp/pki/hub.key" --layout "$layout" \
        --maildir "$tmp/maildir" "$@" >"$tmp/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 50); do
        (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    python3 "$here/record_proxy.py" "$port" "$tmp/$name.bin" &
    local proxy=$!
    sleep 0.3
    timeout 10 openssl s_client -connect "127.0.0.1:$((port + 1))" -starttls smtp -tls1_2 \
        -cert "$tmp/pki/um.pem" -key "$tmp/pki/um.key" </dev/null >/dev/null 2>&1 || true
    wait "$proxy" || true
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}
store3="$tmp/store3.pem"
cat "$tmp/pki/ca.pem" "$tmp/roots/roots.pem" > "$store3"
store60="$tmp/store60.pem"
cat "$tmp/roots60/roots.pem" "$tmp/pki/ca.pem" > "$store60"
capture per-message per-message "$store3"
capture coalesced coalesced "$store3"
capture small-fragment per-message "$store60" --max-fragment 512

f="$corpus/tls_flight"
mkdir -p "$f"
# [layout, max_fragment hi, lo, cut, cut, cut]
{ printf '\x00\x40\x05\x10\x80\xf0'; cat "$tmp/per-message.bin"; } > "$f/per-message"
{ printf '\x01\x40\x05\x08\x40\xc0'; cat "$tmp/coalesced.bin"; } > "$f/coalesced"
{ printf '\x00\x02\x00\x01\x02\x03'; cat "$tmp/small-fragment.bin"; } > "$f/small-fragment-60-roots"
ls -l "$s" "$f"
