"""File uploads against real FTP, FTPS and SFTP servers: files appear whole or not at all, and failures read clearly."""
from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from gateway.errors import DeliveryError
from sinks.ftp import FileTarget, uploader_for
from sinks.outbound import OutboundPolicy
from tests.support.ftp import FtpServer
from tests.support.net import free_port
from tests.support.runtime import LOOPBACK_NETWORKS
from tests.support.sshd import SshdServer


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "local.csv"
    path.write_bytes(os.urandom(300_000))
    return path


@pytest.fixture(params=["ftp", "ftps"])
def ftpd(request: pytest.FixtureRequest) -> FtpServer:
    return request.getfixturevalue(f"{request.param}_server")


LOOPBACK = OutboundPolicy.parse(LOOPBACK_NETWORKS)


def ftp_target(server: FtpServer, **changes: object) -> FileTarget:
    values: dict = dict(
        protocol="ftps" if server.ca_file else "ftp", host=server.host, port=server.port,
        username=server.user, password=server.password, ca_file=server.ca_file, timeout=2.0,
        policy=LOOPBACK,
    )
    return FileTarget(**{**values, **changes})


def sftp_target(server: SshdServer, remote_dir: Path, **changes: object) -> FileTarget:
    values: dict = dict(
        protocol="sftp", host=server.host, port=server.port, username=server.username,
        private_key=server.private_key, remote_dir=str(remote_dir), known_hosts=server.known_hosts, timeout=2.0,
        policy=LOOPBACK,
    )
    return FileTarget(**{**values, **changes})


def fingerprint(known_hosts_line: str) -> str:
    blob = base64.b64decode(known_hosts_line.split()[2])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --- FTP and FTPS


def test_upload_appears_whole_under_its_final_name(ftpd: FtpServer, data_file: Path) -> None:
    receipt = uploader_for(ftp_target(ftpd)).upload(data_file, "events.csv")

    assert listing(ftpd.home) == ["events.csv"]
    assert (ftpd.home / "events.csv").read_bytes() == data_file.read_bytes()
    assert receipt.status == 250
    assert receipt.detail.endswith(f"300000 bytes at {ftp_target(ftpd).protocol}://{ftpd.user}@{ftpd.host}:{ftpd.port}/events.csv")


def test_upload_replaces_an_existing_file(ftpd: FtpServer, data_file: Path) -> None:
    (ftpd.home / "events.csv").write_bytes(b"old")
    uploader_for(ftp_target(ftpd)).upload(data_file, "events.csv")

    assert listing(ftpd.home) == ["events.csv"]
    assert (ftpd.home / "events.csv").read_bytes() == data_file.read_bytes()


def test_upload_replaces_on_servers_that_do_not_rename_over_files(ftp_server: FtpServer, data_file: Path) -> None:
    ftp_server.rename_replaces = False
    (ftp_server.home / "events.csv").write_bytes(b"old")
    uploader_for(ftp_target(ftp_server)).upload(data_file, "events.csv")

    assert listing(ftp_server.home) == ["events.csv"]
    assert (ftp_server.home / "events.csv").read_bytes() == data_file.read_bytes()


def test_probe_leaves_nothing_behind(ftpd: FtpServer) -> None:
    receipt = uploader_for(ftp_target(ftpd)).probe()

    assert listing(ftpd.home) == []
    assert "uploaded and removed" in receipt.detail


def test_upload_into_a_subdirectory(ftp_server: FtpServer, data_file: Path) -> None:
    (ftp_server.home / "in").mkdir()
    uploader_for(ftp_target(ftp_server, remote_dir="in")).upload(data_file, "events.csv")

    assert listing(ftp_server.home / "in") == ["events.csv"]


def test_missing_remote_directory(ftp_server: FtpServer, data_file: Path) -> None:
    with pytest.raises(DeliveryError, match="change to directory 'nowhere' .* failed: 550"):
        uploader_for(ftp_target(ftp_server, remote_dir="nowhere")).upload(data_file, "events.csv")


def test_wrong_password(ftpd: FtpServer, data_file: Path) -> None:
    with pytest.raises(DeliveryError, match=r"login as 'uploader' .* 530 .*\(wrong user name or password\)") as caught:
        uploader_for(ftp_target(ftpd, password="wrong")).upload(data_file, "events.csv")
    assert caught.value.retryable and caught.value.status == 530


def test_read_only_directory(ftp_server: FtpServer, data_file: Path) -> None:
    target = ftp_target(ftp_server, username=ftp_server.readonly_user, password=ftp_server.readonly_password)
    with pytest.raises(DeliveryError, match=r"upload of .* failed: 550 .*\(no permission, a read-only"):
        uploader_for(target).upload(data_file, "events.csv")
    assert listing(ftp_server.home) == []


def test_full_disk(ftp_server: FtpServer, data_file: Path) -> None:
    ftp_server.disk_full = True
    with pytest.raises(DeliveryError, match=r"552 .*\(disk full or quota exceeded\)") as caught:
        uploader_for(ftp_target(ftp_server)).upload(data_file, "events.csv")
    assert caught.value.retryable
    assert listing(ftp_server.home) == []


def test_connection_dropped_mid_upload_then_next_upload_is_whole(ftpd: FtpServer, data_file: Path) -> None:
    uploader = uploader_for(ftp_target(ftpd))
    ftpd.drop_after = 64 * 1024
    with pytest.raises(DeliveryError, match="during upload of") as caught:
        uploader.upload(data_file, "events.csv")
    assert caught.value.retryable
    assert listing(ftpd.home) == []

    ftpd.drop_after = None
    uploader.upload(data_file, "events.csv")
    assert listing(ftpd.home) == ["events.csv"]
    assert (ftpd.home / "events.csv").read_bytes() == data_file.read_bytes()


def test_ftp_server_down(data_file: Path) -> None:
    port = free_port()
    target = FileTarget(protocol="ftp", host="127.0.0.1", port=port, username="u", password="p", timeout=1,
                        policy=LOOPBACK)
    with pytest.raises(DeliveryError, match=f"could not connect to 127.0.0.1:{port}"):
        uploader_for(target).upload(data_file, "events.csv")


def test_ftps_certificate_must_be_trusted(ftps_server: FtpServer, data_file: Path) -> None:
    with pytest.raises(DeliveryError, match="TLS certificate of 127.0.0.1:.* not accepted"):
        uploader_for(ftp_target(ftps_server, ca_file=None)).upload(data_file, "events.csv")


def test_ftps_verification_can_be_turned_off(ftps_server: FtpServer, data_file: Path) -> None:
    uploader_for(ftp_target(ftps_server, ca_file=None, verify_tls=False)).upload(data_file, "events.csv")

    assert listing(ftps_server.home) == ["events.csv"]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "..\\x"])
def test_remote_name_must_be_a_plain_file_name(ftp_server: FtpServer, data_file: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not a plain file name"):
        uploader_for(ftp_target(ftp_server)).upload(data_file, name)


# --- SFTP


def test_sftp_upload_with_key(sshd_server: SshdServer, data_file: Path) -> None:
    remote = sshd_server.fresh_dir("key-upload")
    receipt = uploader_for(sftp_target(sshd_server, remote)).upload(data_file, "events.csv")

    assert listing(remote) == ["events.csv"]
    assert (remote / "events.csv").read_bytes() == data_file.read_bytes()
    assert receipt.detail.endswith(f"300000 bytes at sftp://{sshd_server.username}@127.0.0.1:{sshd_server.port}"
                                   f"{remote}/events.csv")


def test_sftp_upload_with_password(sshd_server: SshdServer, data_file: Path) -> None:
    if sshd_server.password is None:
        pytest.skip("password login needs the tests to run as root (see tests/fixtures/sshd.py)")
    remote = sshd_server.fresh_dir("password-upload")
    target = sftp_target(sshd_server, remote, private_key=None, password=sshd_server.password)
    uploader_for(target).upload(data_file, "events.csv")

    assert (remote / "events.csv").read_bytes() == data_file.read_bytes()


def test_sftp_upload_replaces_an_existing_file(sshd_server: SshdServer, data_file: Path) -> None:
    remote = sshd_server.fresh_dir("replace")
    uploader = uploader_for(sftp_target(sshd_server, remote))
    uploader.upload(data_file, "events.csv")
    data_file.write_bytes(b"second version\n")
    uploader.upload(data_file, "events.csv")

    assert listing(remote) == ["events.csv"]
    assert (remote / "events.csv").read_bytes() == b"second version\n"


def test_sftp_probe_leaves_nothing_behind(sshd_server: SshdServer) -> None:
    remote = sshd_server.fresh_dir("probe")
    uploader_for(sftp_target(sshd_server, remote)).probe()

    assert listing(remote) == []


def test_sftp_changed_host_key_is_refused_for_good(sshd_server: SshdServer, data_file: Path) -> None:
    remote = sshd_server.fresh_dir("changed-key")
    target = sftp_target(sshd_server, remote, known_hosts=sshd_server.other_known_hosts)
    with pytest.raises(DeliveryError) as caught:
        uploader_for(target).upload(data_file, "events.csv")

    error = caught.value
    assert not error.retryable
    assert f"host key of 127.0.0.1:{sshd_server.port} does not match known_hosts" in str(error)
    assert f"got ssh-ed25519 {fingerprint(sshd_server.known_hosts)}" in str(error)
    assert f"expected ssh-ed25519 {fingerprint(sshd_server.other_known_hosts)}" in str(error)
    assert listing(remote) == []


def test_sftp_unknown_host_is_refused_for_good(sshd_server: SshdServer, data_file: Path) -> None:
    remote = sshd_server.fresh_dir("unknown-host")
    elsewhere = sshd_server.known_hosts.replace("[127.0.0.1]", "[192.0.2.1]")
    with pytest.raises(DeliveryError) as caught:
        uploader_for(sftp_target(sshd_server, remote, known_hosts=elsewhere)).upload(data_file, "events.csv")

    assert not caught.value.retryable
    assert f"127.0.0.1:{sshd_server.port} is not in known_hosts" in str(caught.value)
    assert fingerprint(sshd_server.known_hosts) in str(caught.value)


def test_sftp_wrong_password(sshd_server: SshdServer, data_file: Path) -> None:
    target = sftp_target(sshd_server, sshd_server.home, private_key=None, password="wrong")
    with pytest.raises(DeliveryError, match=f"refused the SSH login as '{sshd_server.username}'") as caught:
        uploader_for(target).upload(data_file, "events.csv")
    assert caught.value.retryable


def test_sftp_read_only_directory(sshd_server: SshdServer, data_file: Path) -> None:
    with pytest.raises(DeliveryError, match="permission denied"):
        uploader_for(sftp_target(sshd_server, sshd_server.readonly)).upload(data_file, "events.csv")
    assert listing(sshd_server.readonly) == []


def test_sftp_missing_remote_directory(sshd_server: SshdServer, data_file: Path) -> None:
    with pytest.raises(DeliveryError, match="change to directory .* no such file or directory"):
        uploader_for(sftp_target(sshd_server, sshd_server.home / "nowhere")).upload(data_file, "events.csv")


def test_sftp_server_down(sshd_server: SshdServer, data_file: Path) -> None:
    port = free_port()
    target = sftp_target(sshd_server, sshd_server.home, port=port)
    with pytest.raises(DeliveryError, match=f"could not connect to 127.0.0.1:{port}") as caught:
        uploader_for(target).upload(data_file, "events.csv")
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"known_hosts": "127.0.0.1 ssh-ed25519"}, "known_hosts line 1"),
        ({"known_hosts": "# ok\n127.0.0.1 ssh-ed25519 !!!notbase64"}, "known_hosts line 2"),
        ({"known_hosts": "@cert-authority * ssh-ed25519 AAAA"}, "not supported"),
        ({"private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nnonsense\n"}, "private key"),
        ({"protocol": "scp"}, "unknown protocol"),
    ],
)
def test_bad_sftp_settings_are_refused_up_front(sshd_server: SshdServer, changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        uploader_for(sftp_target(sshd_server, sshd_server.home, **changes))
