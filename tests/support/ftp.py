"""pyftpdlib on 127.0.0.1 (plain or with required TLS), with switches that simulate server trouble."""
from __future__ import annotations

import contextlib
import secrets
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # pyftpdlib imports the standard library's asynchat and asyncore, which warn on import
    # (deprecated, gone in Python 3.12, where pyftpdlib uses the pyasynchat/pyasyncore copies).
    warnings.filterwarnings("ignore", r"The (asyncore|asynchat) module is deprecated", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler
    from pyftpdlib.servers import FTPServer

from tests.support.tls import TlsFiles


@dataclass
class FtpServer:
    """A running server and its switches.

    ``user`` may write to ``home``; ``readonly_user`` sees the same directory but may not write.
    Switches, read on every command: ``disk_full`` answers STOR with 552; ``drop_after`` cuts
    the control and data connections once an upload has sent that many bytes;
    ``rename_replaces=False`` refuses to rename over an existing file, as Windows servers do.
    """

    host: str
    port: int
    user: str
    password: str
    readonly_user: str
    readonly_password: str
    home: Path
    ca_file: str | None
    disk_full: bool = False
    drop_after: int | None = None
    rename_replaces: bool = True


class _Faults:
    """Command-handler mixin acting on the server's switches."""

    control: FtpServer

    def ftp_STOR(self, file: str, mode: str = "w") -> Any:
        if self.control.disk_full:
            self.respond("552 Requested file action aborted: exceeded storage allocation.")  # type: ignore[attr-defined]
            return None
        return super().ftp_STOR(file, mode)  # type: ignore[misc]

    def ftp_RNTO(self, path: str) -> Any:
        if not self.control.rename_replaces and self._rnfr and self.fs.lexists(path):  # type: ignore[attr-defined]
            self._rnfr = None
            self.respond("550 Cannot rename: file exists.")  # type: ignore[attr-defined]
            return None
        return super().ftp_RNTO(path)  # type: ignore[misc]


class _DroppingDTP(DTPHandler):
    """Data channel that cuts the whole session after ``drop_after`` received bytes."""

    control: FtpServer

    def handle_read(self) -> None:
        super().handle_read()
        limit = self.control.drop_after
        if limit is not None and self.receive and self.tot_bytes_received >= limit:
            self.cmd_channel.close()

    # DTPHandler binds handle_read_event to its own handle_read; rebind to the override.
    handle_read_event = handle_read


@contextlib.contextmanager
def serve_ftp(home: Path, tls: TlsFiles | None = None) -> Iterator[FtpServer]:
    """Serve ``home`` until the block ends, over required explicit TLS with ``tls``."""
    server = FtpServer(
        "127.0.0.1", 0, "uploader", secrets.token_urlsafe(12), "reader", secrets.token_urlsafe(12),
        home, tls.ca_file if tls else None,
    )
    authorizer = DummyAuthorizer()
    authorizer.add_user(server.user, server.password, str(home), perm="elradfmwMT")
    authorizer.add_user(server.readonly_user, server.readonly_password, str(home), perm="elr")
    if tls is None:
        dtp = type("Dtp", (_DroppingDTP,), {"control": server})
        handler = type("Handler", (_Faults, FTPHandler), {})
    else:
        # TLS_DTPHandler first, so its TLS read handling runs before the dropping one.
        dtp = type("Dtp", (TLS_DTPHandler, _DroppingDTP), {"control": server})
        handler = type("Handler", (_Faults, TLS_FTPHandler), {
            "certfile": str(tls.cert), "keyfile": str(tls.key),
            "tls_control_required": True, "tls_data_required": True,
        })
    handler.control = server
    handler.authorizer = authorizer
    handler.dtp_handler = dtp
    handler.banner = "eventgw test FTP server"
    handler.auth_failed_timeout = 0.1  # pyftpdlib delays a failed login by 3 s by default
    ftpd = FTPServer(("127.0.0.1", 0), handler)
    server.port = ftpd.address[1]
    stopping = threading.Event()

    def run() -> None:
        while not stopping.is_set():
            ftpd.serve_forever(timeout=0.02, blocking=False, handle_exit=False)
        ftpd.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stopping.set()
        thread.join(5)
