#!/usr/bin/env python3
"""Writes the text seeds of smtp_session, um_header and um_reply under
fuzz/corpus/. Run from anywhere; rewrites only these targets' seed files."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(os.path.dirname(HERE), "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# smtp_session: 8 settings bytes (see fuzz_targets/smtp_session.rs), then the
# client's stream.
def smtp(flags, max_line=0xFF, max_message=0xFF, rcpts=5, errors=10, pieces=(16, 32, 64)):
    return bytes([flags, max_line, max_message, rcpts, errors, *pieces])


OFFER, REQUIRE, DROP = 1, 2, 4
um_flow = (
    "EHLO um.lab.test\r\n"
    "MAIL FROM:<um@lab.test>\r\n"
    "STARTTLS\r\n"
    "EHLO um.lab.test\r\n"
    "MAIL FROM:<um@lab.test> SIZE=1000 BODY=8BITMIME\r\n"
    "RCPT TO:<hub@lab.test>\r\n"
    "STARTTLS\r\n"
    "DATA\r\n"
    "Subject: hi\r\n"
    "Content-Class: voice-ca\r\n"
    "\r\n"
    "..dotted\r\n"
    ".\r\n"
    "QUIT\r\n"
)
write("smtp_session", "tls_required_flow", smtp(OFFER | REQUIRE) + um_flow.encode())
write(
    "smtp_session",
    "starttls_pipelined_discarded",
    smtp(OFFER | REQUIRE | DROP, pieces=(96, 96, 96))
    + b"EHLO a\r\nSTARTTLS\r\nMAIL FROM:<injected@x>\r\nEHLO b\r\nMAIL FROM:<a@b>\r\nQUIT\r\n",
)
write(
    "smtp_session",
    "plain_commands",
    smtp(0)
    + b"HELO\r\nEHLO\r\nhelo um\r\nNOOP\r\nVRFY someone\r\nBOGUS\r\nRCPT TO:<a@b>\r\nDATA\r\n"
    b"MAIL FROM:<>\r\nMAIL FROM:<a@b>\r\nRCPT TO:<>\r\nRCPT TO:x@y\r\nDATA extra\r\nRSET\r\n"
    b"DATA\r\nSTARTTLS\r\nQUIT\r\n",
)
write(
    "smtp_session",
    "two_messages_dot_stuffing",
    smtp(OFFER)
    + b"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n"
    b"..\r\n...\r\n.x\r\n\r\n.\r\n"
    b"MAIL FROM:<a@b> SIZE=26214400\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\nQUIT\r\n",
)
write(
    "smtp_session",
    "bare_lf_smuggling",
    smtp(0, pieces=(5, 7, 11))
    + b"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nbody\n.\nMAIL FROM:<smuggled@x>\r\n"
    b"x\n.\r\n.\r\r\n.\r\nQUIT\n",
)
write(
    "smtp_session",
    "bare_lf_commands",
    smtp(0, pieces=(1, 2, 3))
    + b"EHLO a\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\r\nline\r\n.\r\nQUIT\n",
)
write(
    "smtp_session",
    "long_lines",
    smtp(0, max_line=20, pieces=(3, 9, 27))
    + b"EHLO a\r\nEHLO a-very-long-client-name.lab.test\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
    b"DATA\r\nshort\r\nthis body line is far longer than twenty\r\n.\r\nNOOP\r\n",
)
write(
    "smtp_session",
    "size_limits",
    smtp(0, max_message=2, rcpts=2, errors=3)
    + b"EHLO a\r\nMAIL FROM:<a@b> SIZE=17\r\nMAIL FROM:<a@b> SIZE=99999999999999999999\r\n"
    b"MAIL FROM:<a@b> SIZE=x\r\nMAIL FROM:<a@b> BODY=7BIT FOO=1\r\nMAIL FROM:<a@b> SIZE=1\r\n"
    b"RCPT TO:<1@x>\r\nRCPT TO:<2@x>\r\nRCPT TO:<3@x>\r\nDATA\r\n0123456789\r\n.\r\nQUIT\r\n",
)
write(
    "smtp_session",
    "error_limit_nul",
    smtp(OFFER, errors=2) + b"EHLO a\x00\r\nXYZZY\r\nRCPT TO:<a@b>\r\nNOOP\r\n",
)

# um_header: one mode byte (0: valid UTF-8 only, 1: lossy), then the file.
good = (
    "ContentType: voicemail\n"
    "Recipient: user@lab.test\n"
    "CallerId: +14255550100\n"
    "CallerName: Alice Example\n"
    "CallId: 8f3c2a6e0c1d4b5e9a7f6e5d4c3b2a19\n"
    "Duration: 12\n"
    "AudioFile: 0b1e2d3c4b5a69788796a5b4c3d2e1f0.wav\n"
    "AudioCodec: PCM 16-bit 8000 Hz mono\n"
    "ReceivedTime: 2026-11-25T17:00:00Z\n"
    "Subject: Voice Mail from Alice Example (12 seconds)\n"
    "Importance: normal\n"
    "Attempts: 0\n"
    "LastError:\n"
)
write("um_header", "voicemail", b"\x00" + good.encode())
write(
    "um_header",
    "missedcall",
    b"\x00ContentType: missedcall\nRecipient: a@b.test\nCallId: 1\nReceivedTime: 2026-11-25T17:00:00Z\n",
)
write(
    "um_header",
    "retried_crlf_extra",
    b"\x01"
    + good.replace("Attempts: 0", "Attempts: 3")
    .replace("LastError:", "LastError: STARTTLS: 454 4.7.0 TLS not available")
    .replace("Importance: normal", "Importance: high")
    .replace("\n", "\r\n")
    .encode()
    + b"X-Lab-Note: kept\r\nX-Empty:\r\n",
)
write(
    "um_header",
    "bad_values",
    b"\x01"
    + good.replace("Duration: 12", "Duration: +12").replace("CallerId: +14255550100", "CallerId: +0800")
    .encode()
    + b"CallerName: \xc3\xa9l\xc3\xa8ve \xff\n",
)
write(
    "um_header",
    "offsets",
    b"\x00ContentType: missedcall\nRecipient: a@b.test\nCallId: 1\nReceivedTime: 2026-11-25T17:00:00.123+05:30\n\n   \nImportance: low\n",
)

# um_reply: server replies, one or more lines each.
write("um_reply", "greeting", "220 hub.lab.test ESMTP umlab lab-server\r\n")
write(
    "um_reply",
    "ehlo",
    "250-hub.lab.test greets um.lab.test\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n"
    "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n",
)
write(
    "um_reply",
    "dialogue",
    "220 2.0.0 Ready to start TLS\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    "250 2.0.0 OK queued as 1764522000.M1P2.hub\r\n221 2.0.0 Bye\r\n221\r\n",
)
write(
    "um_reply",
    "errors",
    "421 4.7.1 Client certificate required\n530 5.7.0 Must issue a STARTTLS command first\r\n"
    "552-5.3.4 Message size\r\n552 5.3.4 exceeds fixed limit\r\n999 x\r\n2500\r\nabc\r\n25\r\n",
)
# The reader's caps: a line just over 4,096 bytes, a reply of 101 lines, and
# one near 64 KiB (the fuzzer grows it past the cap; run.sh allows 70,000-byte
# inputs for um_reply).
write("um_reply", "long_line", "250-" + "a" * 4093 + "\r\n250 OK\r\n")
write("um_reply", "many_lines", "250-x\r\n" * 100 + "250 x\r\n")
write("um_reply", "near_64k", ("250-" + "b" * 3994 + "\r\n") * 15 + "250 end\r\n")
# A multi-line reply whose code changes mid-way (RFC 5321 4.2.1 forbids it).
write("um_reply", "code_change", "250-hub.lab.test\r\n550 5.7.1 no\r\n")
