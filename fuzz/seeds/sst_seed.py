#!/usr/bin/env python3
"""Writes a Windows serialized store (.sst) holding the certificates of the
given PEM files, as CertSaveStore lays it out: header, then per certificate
its SHA-1 hash property, a friendly name and the certificate element, then
the end marker. Prefixes the picker byte store_load uses for ".sst".

    sst_seed.py PICK OUT PEM..."""

import base64
import hashlib
import re
import struct
import sys

pick, out, pems = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
ders = []
for p in pems:
    text = open(p).read()
    for body in re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S):
        ders.append(base64.b64decode("".join(body.split())))


def element(ident, value):
    return struct.pack("<III", ident, 1, len(value)) + value


sst = b"\x00\x00\x00\x00CERT"
for i, der in enumerate(ders):
    sst += element(3, hashlib.sha1(der).digest())
    sst += element(11, f"umlab seed root {i + 1}\x00".encode("utf-16-le"))
    sst += element(32, der)
sst += b"\x00" * 12
with open(out, "wb") as f:
    f.write(bytes([pick]) + sst)
