"""labkit.engine.images.debian: the mirror from apt sources, debootstrap phases, the cleaning."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labkit import errors
from labkit.engine.images import debian

DEB822 = """Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""


def test_sources_deb822_and_one_line() -> None:
    assert debian.parse_sources([("debian.sources", DEB822)], "bookworm") == [
        "http://deb.debian.org/debian"]
    one = ("deb [arch=amd64 signed-by=/k.gpg] https://mirror.example/debian bookworm main\n"
           "# deb http://old.example/debian bookworm main\n"
           "deb-src http://src.example/debian bookworm main\n"
           "deb http://deb.debian.org/debian-security bookworm-security main\n")
    assert debian.parse_sources([("sources.list", one)], "bookworm") == [
        "https://mirror.example/debian"]
    assert debian.parse_sources([("sources.list", one)], "trixie") == []


def test_sources_disabled_and_non_http_skipped() -> None:
    text = DEB822.replace("Components: main\nSigned", "Enabled: no\nComponents: main\nSigned")
    assert debian.parse_sources([("d.sources", text)], "bookworm") == []
    assert debian.parse_sources([("a.list", "deb file:/srv/debian bookworm main\n")],
                                "bookworm") == []


def test_default_mirror_missing_names_the_flag(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    with pytest.raises(errors.NotFoundError) as exc:
        debian.default_mirror("bookworm", tmp_path)
    assert "--mirror" in str(exc.value.hint)
    (tmp_path / "sources.list.d" / "x.sources").write_text(DEB822)
    assert debian.default_mirror("bookworm", tmp_path) == "http://deb.debian.org/debian"


@pytest.mark.parametrize("suite,mirror", [("bookworm; rm -rf /", "http://x/debian"),
                                          ("../x", "http://x/debian"),
                                          ("bookworm", "ftp://x/debian"),
                                          ("bookworm", "http://x/debian --foreign"),
                                          ("bookworm", "-http://x")])
def test_check_args_refuses(suite: str, mirror: str) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        debian.check_args(suite, mirror)


def test_phase_of() -> None:
    assert debian.phase_of("I: Retrieving libc6 2.36-9") == debian.Phase("retrieving",
                                                                         "libc6 2.36-9")
    assert debian.phase_of("I: Configuring bash...") == debian.Phase("configuring", "bash")
    assert debian.phase_of("I: Base system installed successfully.").name == "done"
    assert debian.phase_of("W: something") is None


def test_clean_rootfs(tmp_path: Path) -> None:
    root = tmp_path
    for d in ("var/lib/apt/lists", "var/cache/apt/archives", "var/log/apt", "dev/pts", "tmp",
              "var/tmp", "run", "etc/apt/apt.conf.d", "usr/sbin", "var/lib/dpkg"):
        (root / d).mkdir(parents=True)
    for f, text in (("var/lib/apt/lists/deb_Packages", "x"),
                    ("var/cache/apt/archives/bash.deb", "x"), ("var/cache/apt/pkgcache.bin", "x"),
                    ("var/log/dpkg.log", "x"), ("var/log/apt/history.log", "x"),
                    ("etc/hostname", "buildhost\n"), ("etc/resolv.conf", "nameserver 10.1.1.1\n"),
                    ("var/lib/dpkg/status-old", "x"), ("var/lib/dpkg/status", "keep")):
        (root / f).write_text(text)
    os.symlink("/proc/self/fd", root / "dev/fd")
    debian.clean_rootfs(root)
    assert os.listdir(root / "var/lib/apt/lists") == ["partial"]
    assert os.listdir(root / "var/cache/apt/archives") == ["partial"]
    assert not (root / "var/cache/apt/pkgcache.bin").exists()
    assert os.listdir(root / "var/log") == [] and os.listdir(root / "dev") == []
    assert (root / "etc/machine-id").read_text() == ""
    assert (root / "etc/resolv.conf").read_text() == ""
    assert (root / "etc/hostname").read_text() == "localhost\n"
    assert not (root / "var/lib/dpkg/status-old").exists()
    assert (root / "var/lib/dpkg/status").read_text() == "keep"
    rc = root / "usr/sbin/policy-rc.d"
    assert rc.read_text().rstrip().endswith("exit 101") and os.access(rc, os.X_OK)
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert "archives/*.deb" in (root / "etc/apt/apt.conf.d/docker-clean").read_text()
