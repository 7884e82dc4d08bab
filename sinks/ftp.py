"""File uploads over FTP, FTPS and SFTP: write to a temporary name, then rename into place.

A reader of the remote directory therefore sees a file either complete under its final name
or not at all; temporary files are named ``.<name>.<random>.part`` and removed on failure.
Connections go only to addresses the target's outbound policy permits (``sinks.outbound``), and
a whole upload must end within its deadline (``sinks.deadline``).
"""
from __future__ import annotations

import ftplib
import io
import posixpath
import secrets
import socket
import ssl
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import paramiko
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey
from paramiko.ssh_exception import NoValidConnectionsError

from gateway.errors import DeliveryError
from sinks import deadline
from sinks.base import Receipt, excerpt, network_error, tls_context
from sinks.outbound import PUBLIC_ONLY, OutboundPolicy

PROTOCOLS = ("ftp", "ftps", "sftp")
DEFAULT_PORTS = {"ftp": 21, "ftps": 21, "sftp": 22}
PROBE_CONTENT = b"eventgw upload test; safe to delete\n"

# What an FTP reply code usually means for an upload, added to the server's own words.
_FTP_HINTS = {
    "421": "the server is closing the connection",
    "425": "no data connection; a firewall may block passive mode",
    "426": "the transfer was aborted; the connection broke",
    "452": "disk full or quota exceeded",
    "530": "wrong user name or password",
    "550": "no permission, a read-only or missing directory, or a full disk",
    "552": "disk full or quota exceeded",
    "553": "file name not allowed",
}


@dataclass(frozen=True, kw_only=True)
class FileTarget:
    """Where files go.

    ``known_hosts`` holds OpenSSH known_hosts lines (SFTP); ``port`` None means the protocol's default.
    ``timeout`` bounds each wait for the server; ``deadline`` a whole upload of a small file (a large
    one gets more, see ``deadline.for_transfer``); ``policy`` says which addresses the host may have.
    """

    protocol: str
    host: str
    port: int | None = None
    username: str
    password: str | None = None
    private_key: str | None = None
    private_key_passphrase: str | None = None
    remote_dir: str = "."
    known_hosts: str = ""
    verify_tls: bool = True
    ca_file: str | None = None
    timeout: float = 30.0
    deadline: float = 30.0
    policy: OutboundPolicy = PUBLIC_ONLY

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.protocol!r}; expected one of {', '.join(PROTOCOLS)}")

    @property
    def address(self) -> str:
        """``host:port``, as error messages name the server."""
        return f"{self.host}:{self.port or DEFAULT_PORTS[self.protocol]}"

    def url(self, name: str) -> str:
        """Where ``name`` ends up, for receipts and logs (no password)."""
        path = posixpath.normpath(posixpath.join(self.remote_dir, name)).lstrip("/")
        return f"{self.protocol}://{self.username}@{self.address}/{path}"


class Uploader(Protocol):
    """Puts files into a target's remote directory."""

    def upload(self, local_path: Path, remote_name: str) -> Receipt:
        """Upload ``local_path`` as ``remote_name``, replacing a file of that name; DeliveryError on failure."""
        ...

    def probe(self) -> Receipt:
        """Upload and remove a small test file, to check address, login and write permission."""
        ...


def uploader_for(target: FileTarget) -> Uploader:
    """The uploader for the target's protocol."""
    return SftpUploader(target) if target.protocol == "sftp" else FtpUploader(target)


class _Uploader(ABC):
    """The upload sequence every protocol shares; subclasses supply the protocol steps."""

    def __init__(self, target: FileTarget) -> None:
        self.target = target

    def upload(self, local_path: Path, remote_name: str) -> Receipt:
        """Upload ``local_path`` as ``remote_name``, replacing a file of that name; DeliveryError on failure."""
        if not remote_name or "/" in remote_name or "\\" in remote_name or remote_name in (".", ".."):
            raise ValueError(f"{remote_name!r} is not a plain file name")
        with open(local_path, "rb") as source:
            return self._put(source, remote_name, keep=True)

    def probe(self) -> Receipt:
        """Upload and remove a small test file, to check address, login and write permission."""
        return self._put(io.BytesIO(PROBE_CONTENT), f".eventgw-probe-{secrets.token_hex(4)}", keep=False)

    def _put(self, source: BinaryIO, name: str, keep: bool) -> Receipt:
        size = source.seek(0, io.SEEK_END)
        source.seek(0)
        with deadline.Deadline(deadline.for_transfer(self.target.deadline, size)) as limit:
            try:
                return self._transfer(source, name, keep)
            except DeliveryError as exc:
                if limit.expired:
                    raise DeliveryError(f"{self.target.address} did not take the file within the delivery deadline "
                                        f"of {round(limit.seconds, 1):g} s") from exc
                raise

    def _transfer(self, source: BinaryIO, name: str, keep: bool) -> Receipt:
        part = f".{name}.{secrets.token_hex(4)}.part"
        with self._session() as conn:
            try:
                with self._step(f"upload of {part}"):
                    self._store(conn, source, part)
                with self._step(f"rename of {part} to {name}"):
                    status, answer = self._rename(conn, part, name)
                if not keep:
                    with self._step(f"removal of {name}"):
                        self._delete(conn, name)
            except DeliveryError:
                self._discard(part)
                raise
        action = "uploaded" if keep else "uploaded and removed"
        return Receipt(status, excerpt(answer), f"{action} {source.tell()} bytes at {self.target.url(name)}")

    def _discard(self, name: str) -> None:
        """Remove a temporary file on a fresh connection (the old one may be broken); failure is ignored."""
        try:
            with self._session() as conn, self._step(f"removal of {name}"):
                self._delete(conn, name)
        except DeliveryError:
            pass

    @abstractmethod
    def _session(self) -> Any:
        """A context manager: a logged-in connection in the remote directory."""

    @abstractmethod
    def _step(self, what: str) -> Any:
        """A context manager that turns the protocol's exceptions into DeliveryError naming ``what``."""

    @abstractmethod
    def _store(self, conn: Any, source: BinaryIO, name: str) -> None: ...

    @abstractmethod
    def _rename(self, conn: Any, source: str, target: str) -> tuple[int | None, str]: ...

    @abstractmethod
    def _delete(self, conn: Any, name: str) -> None: ...


def _open_control(ftp: ftplib.FTP, target: FileTarget) -> None:
    """What ``ftp.connect`` does, but to an address of the host that the target's policy permits, and
    under the attempt's deadline. Passive data connections go to the same address (ftplib does not
    trust the one a server names); TLS still checks the certificate against the host name."""
    port = target.port or DEFAULT_PORTS[target.protocol]
    ftp.host, ftp.port = target.host, port
    ftp.sock = deadline.watch(target.policy.connect(target.host, port, target.timeout))
    ftp.af = ftp.sock.family
    ftp.file = ftp.sock.makefile("r", encoding=ftp.encoding)
    ftp.welcome = ftp.getresp()


class _FTP(ftplib.FTP):
    """FTP whose data connections are watched by the attempt's deadline (as objects: their close ends
    the upload, and must reach the server at once)."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = super().ntransfercmd(cmd, rest)
        return deadline.watch_object(conn), size


class _FTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS that resumes the control connection's TLS session on data connections.

    Many servers (vsftpd, FileZilla Server) refuse data connections that do not, and ftplib
    does not do it by itself. Its data connections are watched by the attempt's deadline.
    """

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            session = cast(ssl.SSLSocket, self.sock).session
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return deadline.watch_object(conn), size


class FtpUploader(_Uploader):
    """Uploads over FTP, or FTPS (explicit TLS, ``AUTH TLS``, with the data connections protected too)."""

    @contextmanager
    def _session(self) -> Iterator[ftplib.FTP]:
        target = self.target
        ftp: ftplib.FTP
        if target.protocol == "ftps":
            ftp = _FTP_TLS(context=self._tls_context(), timeout=target.timeout)
        else:
            ftp = _FTP(timeout=target.timeout)
        try:
            with self._step("connection"):
                _open_control(ftp, target)
            with self._step(f"login as {target.username!r}"):
                ftp.login(target.username, target.password or "")
                if isinstance(ftp, ftplib.FTP_TLS):
                    ftp.prot_p()
            with self._step(f"change to directory {target.remote_dir!r}"):
                ftp.cwd(target.remote_dir)
            yield ftp
        finally:
            if ftp.sock is not None:
                try:
                    ftp.quit()
                except ftplib.all_errors:
                    ftp.close()

    @contextmanager
    def _step(self, what: str) -> Iterator[None]:
        peer = self.target.address
        try:
            yield
        except (ftplib.error_perm, ftplib.error_temp) as exc:
            reply = excerpt(str(exc))
            hint = _FTP_HINTS.get(reply[:3])
            message = f"FTP {what} on {peer} failed: {reply}" + (f" ({hint})" if hint else "")
            raise DeliveryError(message, status=int(reply[:3]) if reply[:3].isdigit() else None, excerpt=reply) from exc
        except (ftplib.error_reply, ftplib.error_proto) as exc:
            raise DeliveryError(f"FTP {what} on {peer}: unexpected answer {excerpt(str(exc))}") from exc
        except EOFError as exc:
            raise DeliveryError(f"{peer} closed the connection during {what}") from exc
        except OSError as exc:
            raise network_error(exc, peer, self.target.timeout, during=what) from exc

    def _tls_context(self) -> ssl.SSLContext:
        return tls_context(self.target.ca_file, self.target.verify_tls)

    def _store(self, conn: ftplib.FTP, source: BinaryIO, name: str) -> None:
        conn.storbinary(f"STOR {name}", source)

    def _rename(self, conn: ftplib.FTP, source: str, target: str) -> tuple[int | None, str]:
        try:
            reply = conn.rename(source, target)
        except ftplib.error_perm as refused:
            # Some servers (Windows ones, mostly) do not rename over an existing file.
            try:
                conn.delete(target)
            except ftplib.error_perm:
                raise refused from None
            reply = conn.rename(source, target)
        return int(reply[:3]), reply

    def _delete(self, conn: ftplib.FTP, name: str) -> None:
        conn.delete(name)


class _RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    """Refuses a server whose host is not in known_hosts, naming the key it offered."""

    def __init__(self, address: str) -> None:
        self.address = address

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise DeliveryError(
            f"{self.address} is not in known_hosts; it offered the {key.get_name()} key {key.fingerprint}. "
            "Add the server's key to known_hosts after checking that fingerprint with its operator",
            retryable=False,
        )


class SftpUploader(_Uploader):
    """Uploads over SFTP, checking the server's host key against the target's known_hosts."""

    def __init__(self, target: FileTarget) -> None:
        super().__init__(target)
        self._known = known_host_entries(target.known_hosts)
        self._key = (
            load_private_key(target.private_key, target.private_key_passphrase) if target.private_key else None
        )

    @contextmanager
    def _session(self) -> Iterator[paramiko.SFTPClient]:
        target = self.target
        client = paramiko.SSHClient()
        for hostname, key in self._known:
            client.get_host_keys().add(hostname, key.get_name(), key)
        client.set_missing_host_key_policy(_RefuseUnknownHost(target.address))
        try:
            with self._step("connection"):
                port = target.port or DEFAULT_PORTS["sftp"]
                sock = deadline.watch(target.policy.connect(target.host, port, target.timeout))
                client.connect(
                    target.host, port, sock=sock, username=target.username,
                    password=target.password, pkey=self._key, timeout=target.timeout,
                    banner_timeout=target.timeout, auth_timeout=target.timeout, channel_timeout=target.timeout,
                    allow_agent=False, look_for_keys=False,
                )
                sftp = client.open_sftp()
                sftp.get_channel().settimeout(target.timeout)  # type: ignore[union-attr]
            with self._step(f"change to directory {target.remote_dir!r}"):
                sftp.chdir(target.remote_dir)
            yield sftp
        finally:
            client.close()

    @contextmanager
    def _step(self, what: str) -> Iterator[None]:
        peer, target = self.target.address, self.target
        try:
            yield
        except paramiko.BadHostKeyException as exc:
            raise DeliveryError(
                f"host key of {peer} does not match known_hosts: got {exc.key.get_name()} {exc.key.fingerprint}, "
                f"expected {exc.expected_key.get_name()} {exc.expected_key.fingerprint}. "
                "If the server's key was changed on purpose, update known_hosts",
                retryable=False,
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise DeliveryError(f"{peer} refused the SSH login as {target.username!r}: {exc}") from exc
        except paramiko.SSHException as exc:
            raise DeliveryError(f"SSH {what} with {peer} failed: {exc}") from exc
        except EOFError as exc:
            raise DeliveryError(f"{peer} closed the connection during {what}") from exc
        except PermissionError as exc:
            raise DeliveryError(
                f"SFTP {what} on {peer} refused: permission denied (a read-only directory or no write permission)"
            ) from exc
        except FileNotFoundError as exc:
            raise DeliveryError(f"SFTP {what} on {peer} failed: no such file or directory") from exc
        except NoValidConnectionsError as exc:
            first = cast(OSError, next(iter(exc.errors.values())))
            raise network_error(first, peer, target.timeout, during=what) from exc
        except OSError as exc:
            if exc.errno is None and not isinstance(exc, (TimeoutError, ConnectionError, socket.gaierror)):
                # An SFTP status without an errno equivalent; OpenSSH sends this for a full disk.
                raise DeliveryError(f"SFTP {what} on {peer} failed: the server reported {exc} (disk full?)") from exc
            raise network_error(exc, peer, target.timeout, during=what) from exc

    def _store(self, conn: paramiko.SFTPClient, source: BinaryIO, name: str) -> None:
        conn.putfo(source, name, confirm=True)

    def _rename(self, conn: paramiko.SFTPClient, source: str, target: str) -> tuple[int | None, str]:
        conn.posix_rename(source, target)  # replaces atomically (OpenSSH's posix-rename extension)
        return None, ""

    def _delete(self, conn: paramiko.SFTPClient, name: str) -> None:
        conn.remove(name)


def known_host_entries(text: str) -> list[tuple[str, paramiko.PKey]]:
    """(host pattern, key) pairs from OpenSSH known_hosts lines; ValueError naming a bad line."""
    entries: list[tuple[str, paramiko.PKey]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            raise ValueError(f"known_hosts line {number}: markers such as @cert-authority are not supported")
        try:
            entry = HostKeyEntry.from_line(line, number)
        except (InvalidHostKey, paramiko.SSHException, ValueError):
            entry = None
        if entry is None:
            raise ValueError(f"known_hosts line {number} is not '<host> <key type> <base64 key>' with a known key type")
        entries.extend((hostname, entry.key) for hostname in entry.hostnames)
    return entries


def load_private_key(text: str, passphrase: str | None) -> paramiko.PKey:
    """An Ed25519, ECDSA or RSA private key from its OpenSSH or PEM text; ValueError if unreadable."""
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise ValueError("the private key is encrypted; set its passphrase") from None
        except (paramiko.SSHException, ValueError):
            continue
    raise ValueError(
        "the private key is not an Ed25519, ECDSA or RSA key in OpenSSH or PEM form, or its passphrase is wrong"
    )
