"""A real OpenSSH sshd on 127.0.0.1 offering SFTP, with a throwaway host key and configuration.

Run as root (as in CI), it logs in a dedicated unprivileged user ``SFTP_USER`` (created for
the process) by password or key; otherwise the current user, by key only (``password`` is None).
"""
from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.net import free_port

SSHD = "/usr/sbin/sshd"
# One system user per test session (removed at its end): sessions running side by side on
# one machine must not reset each other's password or home.
SFTP_USER = f"egw-sftp-{os.getpid()}"


@dataclass(frozen=True)
class SshdServer:
    """A running sshd.

    ``known_hosts`` is the line that trusts it; ``other_known_hosts`` names the same address
    with another key (a changed host key). ``home`` is writable by ``username``; ``readonly``
    is a directory it may read but not write. ``private_key`` is OpenSSH PEM text.
    """

    host: str
    port: int
    username: str
    password: str | None
    private_key: str
    known_hosts: str
    other_known_hosts: str
    home: Path
    readonly: Path

    def fresh_dir(self, name: str) -> Path:
        """A new empty directory under ``home`` that the SFTP user may write to."""
        path = self.home / name
        path.mkdir()
        owner = pwd.getpwnam(self.username)
        os.chown(path, owner.pw_uid, owner.pw_gid)
        return path


def _keygen(path: Path) -> str:
    """Generate an ed25519 key pair without passphrase; return the public key as ``type base64``."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _remove_stale_users() -> None:
    """Remove the users of earlier sessions that were killed before they could clean up."""
    prefix = SFTP_USER.rsplit("-", 1)[0] + "-"
    for entry in pwd.getpwall():
        pid = entry.pw_name[len(prefix):]
        if entry.pw_name.startswith(prefix) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            subprocess.run(["userdel", "--force", entry.pw_name], check=False, capture_output=True)


def _ensure_user(home: Path, password: str) -> None:
    _remove_stale_users()
    try:
        pwd.getpwnam(SFTP_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SFTP_USER], check=True
        )
    subprocess.run(["usermod", "--home", str(home), SFTP_USER], check=True)
    subprocess.run(["chpasswd"], input=f"{SFTP_USER}:{password}\n", text=True, check=True)


def _wait_for_banner(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                if probe.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not answer within 10 s:\n{log.read_text()}")


@contextlib.contextmanager
def serve_sshd() -> Iterator[SshdServer]:
    """Run ``SSHD`` with ``internal-sftp`` until the block ends."""
    as_root = os.geteuid() == 0
    # Not under pytest's tmp_path: its parents are private to root, and the SFTP user must
    # reach its home and the authorized keys.
    base = Path(tempfile.mkdtemp(prefix="eventgw-sshd-"))
    try:
        base.chmod(0o755)
        home = base / "home"
        home.mkdir()
        readonly = home / "readonly"
        readonly.mkdir()
        host_key = _keygen(base / "host_key")
        other_key = _keygen(base / "other_key")
        client_key = _keygen(base / "client_key")
        (base / "authorized_keys").write_text(client_key + "\n")
        (base / "authorized_keys").chmod(0o644)
        password: str | None = None
        if as_root:
            password = secrets.token_urlsafe(16)
            _ensure_user(home, password)
            os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
            username = SFTP_USER
            owner = pwd.getpwnam(SFTP_USER)
            os.chown(home, owner.pw_uid, owner.pw_gid)
        else:
            username = pwd.getpwuid(os.getuid()).pw_name
            readonly.chmod(0o555)
        port = free_port()
        config = base / "sshd_config"
        config.write_text(
            f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {base / "host_key"}
PidFile {base / "sshd.pid"}
AuthorizedKeysFile {base / "authorized_keys"}
PasswordAuthentication {"yes" if as_root else "no"}
PubkeyAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
AllowUsers {username}
StrictModes no
UsePAM no
Subsystem sftp internal-sftp -d {home}
LogLevel ERROR
"""
        )
        log = base / "sshd.log"
        with open(log, "wb") as log_file:
            process = subprocess.Popen([SSHD, "-f", str(config), "-D", "-e"], stdout=log_file, stderr=log_file)
        try:
            _wait_for_banner(port, process, log)
            yield SshdServer(
                host="127.0.0.1",
                port=port,
                username=username,
                password=password,
                private_key=(base / "client_key").read_text(),
                known_hosts=f"[127.0.0.1]:{port} {host_key}",
                other_known_hosts=f"[127.0.0.1]:{port} {other_key}",
                home=home,
                readonly=readonly,
            )
        finally:
            process.terminate()
            process.wait(5)
    finally:
        if as_root:
            subprocess.run(["userdel", "--force", SFTP_USER], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
