"""Run LibreTranslate with every connection outside loopback refused (proof of offline).

    python scripts/libretranslate_offline.py --host 127.0.0.1 --port 5000 --load-only en,de

Run with the Python of a LibreTranslate venv; the arguments are LibreTranslate's own. A
connection or name lookup to anywhere but this machine raises OSError inside the server and
prints one line `nmt-offline: refused ...` to stderr, so a log without that line shows that
nothing tried to leave. Used by scripts/libretranslate_demo.sh, which also sets up the
Argos folders and the local package index that keep LibreTranslate's start-up from trying.
"""

from __future__ import annotations

import ipaddress
import socket
import sys


def _local(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def refuse_network() -> None:
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def refuse(what: str) -> None:
        print(f"nmt-offline: refused {what}", file=sys.stderr, flush=True)
        raise OSError(f"network disabled (nmt-offline): {what}")

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
            refuse(f"connect to {address}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _local(host):
            refuse(f"name lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect
    socket.getaddrinfo = getaddrinfo


if __name__ == "__main__":
    refuse_network()
    from libretranslate.main import main

    sys.argv[0] = "libretranslate"
    main()
