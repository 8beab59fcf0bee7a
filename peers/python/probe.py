"""The Python ssl client (OpenSSL underneath) as a mail client: smtplib with
STARTTLS and a client certificate, as Python users send mail.

Certificate selection: the ssl module has none of its own. With a certificate
loaded (SSLContext.load_cert_chain) OpenSSL sends it whatever CA names the
server lists; it sends an empty Certificate only when none is loaded. Whether
it sent one is read from the handshake messages it wrote (the SSLContext
message callback): its Certificate message carries an empty list or not.

Prints one JSON line (peers/README.md). Standard library only.
"""

import argparse
import json
import platform
import smtplib
import socket
import ssl
import sys

HS_CERTIFICATE = 11

result = {
    "stack": "python",
    "version": f"{platform.python_version()} ({ssl.OPENSSL_VERSION})",
    "outcome": "tls_failed",
    "stage": "connect",
    "error": "",
    "certificate_sent": None,
}


def emit(code):
    print(json.dumps(result, separators=(",", ":")), flush=True)
    sys.exit(code)


class Usage(argparse.ArgumentParser):
    def error(self, message):
        print(f"usage: run --host H --port P --cert CHAIN.pem --key KEY.pem --ca CA.pem "
              f"[--tls 1.2|1.3]: {message}", file=sys.stderr)
        sys.exit(2)


def main():
    p = Usage(add_help=False)
    for name in ("--host", "--port", "--cert", "--key", "--ca"):
        p.add_argument(name, required=True)
    p.add_argument("--tls", default="1.2", choices=("1.2", "1.3"))
    args = p.parse_args()
    try:
        port = int(args.port)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        p.error("bad port")
    version = ssl.TLSVersion.TLSv1_2 if args.tls == "1.2" else ssl.TLSVersion.TLSv1_3
    try:
        ctx = ssl.create_default_context(cafile=args.ca)
        ctx.minimum_version = ctx.maximum_version = version
        ctx.load_cert_chain(args.cert, args.key)
    except (OSError, ssl.SSLError) as e:
        p.error(str(e))

    def watch(_conn, direction, _version, content_type, msg_type, data):
        # A Certificate the client wrote: 4-byte header, then a 3-byte list
        # length (TLS 1.2) or a context byte first (TLS 1.3).
        if direction == "write" and msg_type == HS_CERTIFICATE and \
                content_type == ssl._TLSContentType.HANDSHAKE:
            at = 4 if args.tls == "1.2" else 5 + (data[4] if len(data) > 4 else 0)
            if len(data) >= at + 3:
                result["certificate_sent"] = int.from_bytes(data[at:at + 3], "big") > 0

    # A debugging hook of CPython (3.8 and later); without it the answer stays null.
    if hasattr(ctx, "_msg_callback"):
        ctx._msg_callback = watch

    smtp = smtplib.SMTP(timeout=30)
    try:
        result["stage"] = "connect"
        code, msg = smtp.connect(args.host, port)
        result["stage"] = "greeting"
        if code != 220:
            raise smtplib.SMTPConnectError(code, msg)
        result["stage"] = "ehlo"
        smtp.ehlo("probe.lab.test")
        result["stage"] = "starttls"
        if not smtp.has_extn("starttls"):
            raise smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server.")
        code, msg = smtp.docmd("STARTTLS")
        if code != 220:
            raise smtplib.SMTPResponseException(code, msg)
    except (smtplib.SMTPException, OSError) as e:
        result["outcome"], result["error"] = "rejected", str(e)
        emit(1)
    try:
        # What smtplib.SMTP.starttls does after its 220, with the stage named.
        result["stage"] = "handshake"
        smtp.sock = ctx.wrap_socket(smtp.sock, server_hostname=args.host)
        smtp.file = None
        smtp.helo_resp = smtp.ehlo_resp = None
        smtp.esmtp_features = {}
        smtp.does_esmtp = False
        result["stage"] = "ehlo-tls"
        smtp.ehlo("probe.lab.test")
        result["stage"] = "mail"
        message = ("From: probe@lab.test\r\nTo: hub@lab.test\r\nSubject: python probe\r\n\r\n"
                   "A small message from the python client.\r\n")
        # sendmail: MAIL, RCPT, DATA and the message; stages from the exception.
        smtp.sendmail("probe@lab.test", ["hub@lab.test"], message)
    except smtplib.SMTPRecipientsRefused as e:
        result.update(outcome="rejected", stage="rcpt", error=str(e))
        emit(1)
    except smtplib.SMTPSenderRefused as e:
        result.update(outcome="rejected", stage="mail", error=str(e))
        emit(1)
    except smtplib.SMTPDataError as e:
        result.update(outcome="rejected", stage="data", error=str(e))
        emit(1)
    except smtplib.SMTPResponseException as e:
        result.update(outcome="rejected", error=str(e))
        emit(1)
    except (smtplib.SMTPException, OSError) as e:
        # An alert, or the connection dropped inside TLS.
        result["error"] = str(e)
        emit(1)
    result.update(outcome="delivered", stage="quit")
    try:
        smtp.quit()
        result["stage"] = "done"
    except (smtplib.SMTPException, OSError):
        pass
    emit(0)


if __name__ == "__main__":
    main()
