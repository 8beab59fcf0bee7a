#!/usr/bin/env python3
"""One-connection TCP proxy on PORT+1 to 127.0.0.1:PORT that saves what the
server sends after its STARTTLS "220 2.0.0" reply (the TLS flight) to OUT."""

import socket
import sys
import threading

port, out = int(sys.argv[1]), sys.argv[2]
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port + 1))
listener.listen(1)
listener.settimeout(10)
client, _ = listener.accept()
server = socket.create_connection(("127.0.0.1", port))
from_server = bytearray()


def pump(src, dst, keep):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if keep is not None:
                keep.extend(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


up = threading.Thread(target=pump, args=(client, server, None))
up.start()
pump(server, client, from_server)
up.join(timeout=5)
marker = b"220 2.0.0 Ready to start TLS\r\n"
at = from_server.find(marker)
flight = bytes(from_server[at + len(marker):]) if at >= 0 else b""
with open(out, "wb") as f:
    f.write(flight[:60000])
