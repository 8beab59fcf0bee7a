#!/usr/bin/env bash
# Measures one real client stack against lab-server and compares um-sim's
# preset with it:
#   - the largest CertificateRequest body the client takes and the smallest it
#     refuses (bisection over stores of exact size, policy full), with the
#     client's error text and what lab-server recorded;
#   - whether it sends or withholds its certificate when its issuer is not
#     listed (one-tier PKI), and with a two-tier PKI whose root is listed.
#
# usage: peers/measure.sh STACK [--tls 1.2|1.3] [--preset NAME] [--bodies B,B,...]
#   --bodies: instead of the bisection, run these request body sizes (issuer listed)
#   STACK: a folder of peers/ with a `run` probe (mbedtls, wolfssl, nss, erlang, ...)
#   UMLAB_BIN: folder with certgen, lab-server, um-sim (default: target/release,
#   then target/debug of this repository)
# Exit: 0 when um-sim's preset agrees with the real client in every case, 1 otherwise.
set -Eeuo pipefail
trap 'echo "measure.sh: command failed at line $LINENO" >&2' ERR

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
stack=${1:?usage: measure.sh STACK [--tls 1.2|1.3] [--preset NAME]}
shift
tls=1.2
preset=""
bodies=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --tls) tls=$2; shift 2 ;;
        --preset) preset=$2; shift 2 ;;
        --bodies) bodies=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
if [[ -z $preset ]]; then
    case $stack in
        mbedtls) preset=mbedtls-3.6.2 ;;
        wolfssl) preset=wolfssl5 ;;
        nss) preset=nss ;;
        erlang) [[ $tls == 1.3 ]] && preset=erlang-tls13 || preset=erlang-tls12 ;;
        *) preset=lenient ;;
    esac
fi
probe="$here/$stack/run"
[[ -x $probe ]] || { echo "no probe $probe" >&2; exit 2; }

bin=${UMLAB_BIN:-}
if [[ -z $bin ]]; then
    for d in "$repo/target/release" "$repo/target/debug"; do
        [[ -x $d/lab-server && -x $d/certgen && -x $d/um-sim ]] && { bin=$d; break; }
    done
fi
[[ -n $bin && -x $bin/lab-server ]] || { echo "set UMLAB_BIN to a folder with certgen, lab-server, um-sim" >&2; exit 2; }

work=$(mktemp -d)
server_pid=""
cleanup() {
    local rc=$?
    trap - ERR
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "measure.sh: terminated by a signal" >&2; exit 143' TERM INT

"$bin/certgen" pki --out "$work/one" --seed 11 >/dev/null
"$bin/certgen" pki --out "$work/two" --seed 12 --shape two-tier >/dev/null
# Filler names of 100 bytes each (102 on the wire), then odd-sized fillers on
# demand. Every component stays within X.520's upper bounds (a CN of at most 64
# characters): Erlang/OTP refuses a request holding a longer one.
pool_dn=100
pool_count=$(( 65535 / (pool_dn + 2) + 1 ))
"$bin/certgen" roots --count $pool_count --profile "fixed:$pool_dn" --dn-only --seed 7 --out "$work/pool" >/dev/null

dn_len() { # DER length of a certificate's subject (what certificate_authorities carries)
    openssl x509 -in "$1" -outform DER | python3 -c '
import sys
der = sys.stdin.buffer.read()
def tlv(i):
    l = der[i + 1]; s = i + 2
    if l & 0x80:
        n = l & 0x7f; l = int.from_bytes(der[s:s + n], "big"); s += n
    return s, s + l   # content start, end
_, _ = tlv(0)
i, _ = tlv(0)          # into Certificate
i, _ = tlv(i)          # into TBSCertificate
starts = []
for _ in range(6):
    starts.append(i)
    i = tlv(i)[1]
subject = 5 if der[starts[0]] == 0xa0 else 4
print(tlv(starts[subject])[1] - starts[subject])
'
}

ca_dn_one=$(dn_len "$work/one/ca.pem")
ca_dn_two=$(dn_len "$work/two/ca.pem")

filler() { # filler LEN TAG -> path of a root whose subject is LEN bytes, or fails
    local dir="$work/filler-$1-$2"
    [[ -f $dir/roots.pem ]] ||
        "$bin/certgen" roots --count 1 --profile "fixed:$1" --dn-only --seed $((1000 * $2 + $1)) --out "$dir" >/dev/null 2>&1 ||
        return 1
    printf '%s\n' "$dir/roots.pem"
}

# fillers WIRE_BYTES OUT: appends one or two names taking WIRE_BYTES (2 + DN each);
# some DN lengths cannot exist in DER (130, for one), so a failing split moves a byte.
fillers() {
    local total=$1 out=$2 f a k
    if (( total <= pool_dn + 2 )) && f=$(filler $((total - 2)) 1); then
        cat "$f" >>"$out"
        return 0
    fi
    for k in 0 1 2 3 4 5 6; do
        a=$(( total / 2 + k ))
        local f1 f2
        if f1=$(filler $((a - 2)) 1) && f2=$(filler $((total - a - 2)) 2); then
            cat "$f1" "$f2" >>"$out"
            return 0
        fi
    done
    echo "no filler pair for $total bytes" >&2
    exit 2
}

# make_store NAMES_BYTES CA_PEM|"" OUT: a store whose certificate_authorities
# hold exactly NAMES_BYTES (each name 2 + its DN), the CA last when given.
make_store() {
    local want=$1 ca=$2 out=$3 rest n full last wire=$((pool_dn + 2))
    rest=$want
    : >"$out"
    if [[ -n $ca ]]; then
        rest=$((rest - 2 - $(dn_len "$ca")))
    fi
    (( rest >= 0 )) || { echo "store of $want bytes cannot hold the CA" >&2; exit 2; }
    if (( rest > 0 )); then
        n=$(( (rest + wire - 1) / wire ))  # names needed
        full=$((n - 1))
        last=$((rest - full * wire))       # 1..wire left for the fillers
        if (( last < 44 && full > 0 )); then  # room for two fillers of >= 22
            full=$((full - 1))
            last=$((last + wire))
        fi
        (( last >= 22 )) || { echo "store of $want bytes cannot be made" >&2; exit 2; }
        (( full <= pool_count )) || { echo "pool too small" >&2; exit 2; }
        awk -v n="$full" '/BEGIN CERT/{c++} c >= 1 && c <= n' "$work/pool/roots.pem" >>"$out"
        fillers "$last" "$out"
    fi
    [[ -n $ca ]] && cat "$ca" >>"$out"
    return 0
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server STORE PKI_DIR: starts lab-server (policy full), sets port,
# server_pid, events, and body (the CertificateRequest body it reports).
start_server() {
    local store=$1 pki=$2
    port=$(free_port)
    events="$work/events.$port.jsonl"
    "$bin/lab-server" --listen "127.0.0.1:$port" --store "$store" --cert "$pki/hub.pem" \
        --key "$pki/hub.key" --policy full --tls "$tls" --maildir "$work/maildir" \
        --events "$events" >"$work/server.out" 2>&1 &
    server_pid=$!
    for _ in $(seq 600); do
        grep -q '^listening on' "$work/server.out" 2>/dev/null && break
        if ! kill -0 "$server_pid" 2>/dev/null; then
            local st=0
            wait "$server_pid" || st=$?
            server_pid=""
            echo "lab-server exited (status $st) before listening:" >&2
            cat "$work/server.out" >&2
            exit 2
        fi
        sleep 0.05
    done
    grep -q '^listening on' "$work/server.out" || { echo "lab-server did not listen within 30 s:" >&2; cat "$work/server.out" >&2; exit 2; }
    local msg
    msg=$(sed -n 's/.*CertificateRequest: \([0-9]*\) bytes, \([0-9]*\) record.*/\1 \2/p' "$work/server.out")
    body=$(( ${msg% *} - 4 ))
    records=${msg#* }
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# run_case LABEL NAMES_BYTES LISTED(yes|no) PKI_DIR: one store, the real
# client and um-sim against it. Sets real_ok, sim_ok; prints one line.
run_case() {
    local label=$1 names=$2 listed=$3 pki=$4 ca=""
    [[ $listed == yes ]] && ca="$pki/ca.pem"
    make_store "$names" "$ca" "$work/store.pem"
    start_server "$work/store.pem" "$pki"
    if [[ -n ${offset:-} ]] && (( body != names + offset )); then
        echo "store of $names bytes of names gave a body of $body, not $((names + offset))" >&2
        exit 2
    fi
    local args=(--host 127.0.0.1 --port "$port" --cert "$pki/um.pem" --key "$pki/um.key" --ca "$pki/ca.pem" --tls "$tls")
    local real rc=0
    real=$("$probe" "${args[@]}" 2>"$work/probe.err") || rc=$?
    if (( rc >= 2 )); then
        echo "probe failed (exit $rc): $(cat "$work/probe.err") $real" >&2
        exit 2
    fi
    local server_event
    server_event=$(tail -n 1 "$events" 2>/dev/null || true)
    rm -rf "$work/q"
    "$bin/um-sim" enqueue --queue "$work/q" --count 1 --seconds 1 --seed 1 >/dev/null
    local sim_rc=0
    "$bin/um-sim" submit --queue "$work/q" --server "127.0.0.1:$port" --cert "$pki/um.pem" \
        --key "$pki/um.key" --server-ca "$pki/ca.pem" --profile "$preset" --retries 1 \
        --timeout 10 --events "$work/sim.jsonl" >/dev/null 2>&1 || sim_rc=$?
    stop_server
    local sim_event
    sim_event=$(tail -n 1 "$work/sim.jsonl" 2>/dev/null || true)
    cp "$work/sim.jsonl" "$work/last-sim.jsonl" 2>/dev/null || true; [[ -n ${MEASURE_KEEP:-} ]] && cp "$work/sim.jsonl" "$MEASURE_KEEP" 2>/dev/null; rm -f "$work/sim.jsonl"
    python3 - "$label" "$body" "$records" "$listed" "$real" "$server_event" "$sim_rc" "$sim_event" "$preset" <<'PY'
import json, sys
label, body, records, listed, real, server, sim_rc, sim, preset = sys.argv[1:]
real = json.loads(real)
server = json.loads(server) if server else {}
sim = json.loads(sim) if sim else {}
hs = server.get("handshake") or {}
cc = server.get("client_certificate")
real_ok = real["outcome"] == "delivered"
sim_ok = sim_rc == "0"
cert = (sim.get("certificate") or {})
real_sent, sim_sent = real["certificate_sent"], cert.get("certificate_sent")
# Agreement: the same verdict and, where both know it, the same certificate decision.
agree = real_ok == sim_ok and (real_sent is None or sim_sent is None or real_sent == sim_sent)
# um-sim's own rustls client gives up near 64 KB: it says so (own-stack-limit)
# instead of a verdict for the preset; that is no disagreement.
own_limit = sim.get("failure") == "own-stack-limit"
if own_limit:
    agree = True
print(f"{label}: body={body} records={records} issuer_listed={listed}")
print(f"  real   {real['stack']} {real['version']}: {real['outcome']} at {real['stage']}; "
      f"certificate_sent={json.dumps(real['certificate_sent'])}; error={json.dumps(real['error'])}")
print(f"  server handshake={hs.get('outcome')} alert={json.dumps(hs.get('alert'))} "
      f"error={json.dumps(hs.get('error'))} client_certificate={'yes' if cc else 'no'}")
print(f"  um-sim {preset}: {'delivered' if sim_ok else 'failed'}; rule={json.dumps(sim.get('rule'))} "
      f"certificate_sent={json.dumps(cert.get('certificate_sent'))} stack_error={json.dumps(sim.get('stack_error'))}"
      f" failure={json.dumps(sim.get('failure'))}"
      f" -> {'NOT OBSERVABLE by um-sim (its own stack limit)' if own_limit else 'AGREES' if agree else 'DIFFERS'}")
with open(sys.argv[0] if False else "/dev/fd/3", "w") as f:
    f.write(f"{int(real_ok)} {int(agree)}\n")
PY
} 3>"$work/verdict"

disagree=0
check() {
    read -r real_ok agree <"$work/verdict"
    [[ $agree == 1 ]] || disagree=1
}

echo "# $stack (TLS $tls) against lab-server (policy full), um-sim --profile $preset"
echo "# lab PKI CA subject: ${ca_dn_one} bytes (one-tier), ${ca_dn_two} bytes (two-tier root)"

# Offset between the names and the body, from lab-server's own report.
run_case "probe" 4000 yes "$work/one"
check
offset=$((body - 4000))

if [[ -n $bodies ]]; then
    IFS=, read -r -a list <<<"$bodies"
    for b in "${list[@]}"; do
        run_case "body $b" $((b - offset)) yes "$work/one"
        check
    done
    if (( disagree )); then echo "VERDICT: um-sim --profile $preset DIFFERS from the real client in at least one case"; exit 1; fi
    echo "VERDICT: um-sim --profile $preset agrees with the real client in every case"
    exit 0
fi

max_names=65535
[[ $tls == 1.3 ]] && max_names=65505   # TLS 1.3 wraps the names in an extension
lo=4000                      # body known to be taken
[[ $real_ok == 1 ]] || { echo "the client fails even a ${body}-byte request; no bisection"; lo=""; }
if [[ -n $lo ]]; then
    run_case "largest lab-server can send" $max_names yes "$work/one"
    check
    if [[ $real_ok == 1 ]]; then
        echo "RESULT: the client takes the largest request lab-server can send (body $body)"
    else
        hi=$max_names
        while (( hi - lo > 1 )); do
            mid=$(( (lo + hi) / 2 ))
            run_case "bisect" $mid yes "$work/one"
            check
            if [[ $real_ok == 1 ]]; then lo=$mid; else hi=$mid; fi
        done
        echo "RESULT: largest body taken $((lo + offset)), smallest refused $((hi + offset))"
        run_case "largest taken (again)" $lo yes "$work/one"; check
        run_case "smallest refused (again)" $hi yes "$work/one"; check
    fi
fi

run_case "issuer unlisted, one-tier" 4000 no "$work/one"
check
run_case "two-tier, root listed" 4000 yes "$work/two"
check
run_case "two-tier, root unlisted" 4000 no "$work/two"
check

if (( disagree )); then echo "VERDICT: um-sim --profile $preset DIFFERS from the real client in at least one case"; exit 1; fi
echo "VERDICT: um-sim --profile $preset agrees with the real client in every case"
