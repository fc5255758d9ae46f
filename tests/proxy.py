"""A TCP proxy on 127.0.0.1 that breaks the network while the server behind it stays up.

As psycopg's tests/fix_proxy.py: stopping PostgreSQL tests a crashed database; cutting the link
tests the common case on a Pi, a NAS that left the Wi-Fi while it runs on. Threads, not asyncio,
so it serves sync and async tests alike and keeps working while a test blocks.

    proxy = Proxy(target_port).start()
    proxy.cut()        # every connection closed; new ones closed at once (server still up)
    proxy.restore()    # connections go through again
    Proxy(port, freeze_on_query=True)  # the server's answers stop after the first query
    proxy.slow("crawler", 1.0)  # each message of the connections named so held 1 s
    proxy.slow("crawler", 0)    # ... and no longer
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

# The start-up message's protocol version (3.0); an SSL or GSS request comes before it.
_PROTOCOL_3 = 196608


class Proxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port` until cut."""

    def __init__(self, target_port: int, *, freeze_on_query: bool = False) -> None:
        self.target_port, self.freeze_on_query = target_port, freeze_on_query
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.frozen = threading.Event()  # set once a query was seen (freeze_on_query)
        self.connections = 0  # accepted while not cut
        self._cut = False
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._slow: dict[str, float] = {}  # application_name -> seconds each message is held

    def start(self) -> Proxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def dsn(self, dsn: str) -> str:
        """`dsn` (postgresql://…@127.0.0.1:PORT/db) through the proxy."""
        return dsn.replace(f":{self.target_port}/", f":{self.port}/")

    def cut(self) -> None:
        """Close every connection now and every new one at once; the server stays up."""
        with self._lock:
            self._cut = True
            conns, self._conns = self._conns, []
        for c in conns:
            _close(c)

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def slow(self, application_name: str, seconds: float) -> None:
        """Hold each message the client sends on connections that gave this
        `application_name` at start-up for `seconds` before passing it on (a NAS busy with a
        RAID scrub: the server answers, late); other connections pass at once. 0 ends it,
        for connections open now too."""
        with self._lock:
            self._slow[application_name] = seconds

    def close(self) -> None:
        self.cut()
        _close(self.sock)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client = self.sock.accept()[0]
            except OSError:
                return  # closed
            with self._lock:
                cut = self._cut
            if cut:
                _close(client)
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._conns += [client, server]
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        name: str | None = None  # the connection's application_name, once seen
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            if from_client:
                if name is None:
                    name = _application_name(data)
                else:
                    with self._lock:
                        hold = self._slow.get(name, 0.0)
                    if hold > 0:
                        time.sleep(hold)
            if self.freeze_on_query:
                # Startup and SSL requests begin with a length (0x00); every later client
                # message begins with its type letter.
                if from_client and data[0] != 0:
                    self.frozen.set()
                if not from_client and self.frozen.is_set():
                    continue
            try:
                dst.sendall(data)
            except OSError:
                break
        _close(dst)  # one side gone: the other sees it, as with a real peer


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _application_name(data: bytes) -> str | None:
    """The `application_name` of a start-up message ("" if it names none); None for anything
    else (an SSL request, which comes first)."""
    if len(data) < 8 or int.from_bytes(data[4:8], "big") != _PROTOCOL_3:
        return None
    words = data[8 : int.from_bytes(data[0:4], "big")].split(b"\0")
    params = dict(zip(words[0::2], words[1::2], strict=False))
    return params.get(b"application_name", b"").decode("utf-8", "replace")
