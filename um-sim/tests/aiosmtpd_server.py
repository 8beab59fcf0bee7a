#!/usr/bin/env python3
"""A real SMTP peer for um-sim's tests: aiosmtpd with STARTTLS required and an
OpenSSL server context that requires a client certificate issued by the lab CA.

Every accepted message is stored in a Maildir-like folder (written to tmp/,
then renamed into new/), with two headers prepended the way an MTA prepends
trace headers:

    X-Lab-Peer-Subject: the client certificate's subject, as OpenSSL verified it
    X-Lab-TLS: protocol version and cipher of the session

The bound port is printed on stdout as `PORT <n>`. The server stops cleanly on
SIGTERM, SIGINT or when stdin closes (the test holds the write end).

Usage:
    aiosmtpd_server.py --host 127.0.0.1 --port 0 --cert hub.pem --key hub.key \
        --ca ca.pem --maildir DIR [--tls-max 1.2|1.3|1.3-p256]

`1.3-p256` allows TLS 1.3 with the P-256 group only, so a client whose first
key share is X25519 (rustls) gets a HelloRetryRequest.
"""

import argparse
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
import uuid

from aiosmtpd.controller import Controller

log = logging.getLogger("aiosmtpd_server")


def subject_text(cert):
    """The subject of a getpeercert() dict as `C=US,O=umlab,OU=...,CN=...`."""
    short = {
        "countryName": "C",
        "organizationName": "O",
        "organizationalUnitName": "OU",
        "commonName": "CN",
    }
    parts = []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            parts.append(f"{short.get(key, key)}={value}")
    return ",".join(parts)


class MaildirHandler:
    def __init__(self, maildir):
        self.maildir = maildir
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(maildir, sub), exist_ok=True)

    async def handle_DATA(self, server, session, envelope):
        info = session.ssl or {}
        peer = info.get("peercert")
        if peer is None and info.get("ssl_object") is not None:
            peer = info["ssl_object"].getpeercert()
        subject = subject_text(peer) if peer else "(none)"
        sslobj = info.get("ssl_object")
        if sslobj is not None:
            cipher = sslobj.cipher() or ("?", "?", 0)
            tls = f"{sslobj.version()} {cipher[0]}"
        else:
            tls = "(none)"
        body = envelope.original_content
        if body is None:
            body = envelope.content
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogateescape")
        trace = (
            f"X-Lab-Peer-Subject: {subject}\r\n"
            f"X-Lab-TLS: {tls}\r\n"
            f"X-Lab-Envelope: from=<{envelope.mail_from}> "
            f"to=<{','.join(envelope.rcpt_tos)}>\r\n"
        ).encode("ascii", "replace")
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.aiosmtpd"
        tmp = os.path.join(self.maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(trace)
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.maildir, "new", name))
        log.info("stored %s from peer %r (%s; %s)", name, session.peer, subject, tls)
        return "250 OK"


class SocketController(Controller):
    """Controller over a socket bound here, so `--port 0` works without a race
    (Controller itself binds inside its thread and needs the port up front)."""

    def __init__(self, handler, sock, **kwargs):
        self._sock = sock
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **kwargs)

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


def tls_context(args):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=args.ca)
    if args.tls_max == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if args.tls_max == "1.3-p256":
        # OpenSSL 3 takes the one curve as the whole groups list.
        ctx.set_ecdh_curve("prime256v1")
    return ctx


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--tls-max", choices=("1.2", "1.3", "1.3-p256"), default="1.3")
    args = p.parse_args()

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    ctx = tls_context(args)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(64)
    controller = SocketController(
        MaildirHandler(args.maildir),
        sock,
        server_hostname="hub.lab.test",
        tls_context=ctx,
        require_starttls=True,
        ready_timeout=30.0,
        timeout=60,
    )
    controller.start()

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_stdin():
        # os.read on the descriptor, not sys.stdin: a daemon thread blocked in
        # a buffered reader makes interpreter shutdown abort (SIGTERM case).
        try:
            while os.read(sys.stdin.fileno(), 4096):
                pass
        except (OSError, ValueError):
            pass
        log.info("stdin closed: stopping")
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    print(f"PORT {sock.getsockname()[1]}", flush=True)
    while not stop.wait(0.2):
        pass
    controller.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
