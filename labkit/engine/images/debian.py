"""A Debian root filesystem from debootstrap(8) --variant=minbase, cleaned as Docker's
debian images are, ready to be packed as a one-layer image.

No registry is reachable from a lab, but a Debian mirror is (package registries are): the
mirror defaults to the one in the host's apt sources (sources.list(5), both the one-line
and the deb822 ``.sources`` forms).  The downloaded .debs are kept in a cache dir
(debootstrap --cache-dir) so a second bootstrap reads no package from the network.

debootstrap runs in a private mount namespace (unshare(1) --mount): the /proc and /sys it
mounts inside the target during its second stage vanish with it, whatever happens.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from labkit import errors

__all__ = ["CACHE_DIR", "SUITE", "DebootstrapError", "Phase", "check_args", "clean_rootfs", "debootstrap", "default_mirror",
           "parse_sources", "phase_of"]

CACHE_DIR = Path("/var/cache/labkit/debootstrap")
SUITE = "bookworm"
_SUITE_RE = re.compile(r"[a-z][a-z0-9-]{1,31}")
_SOURCES = Path("/etc/apt")

# Inside the image: policy-rc.d(8) answering 101 ("action forbidden") keeps invoke-rc.d
# from starting a service while a package is installed in a container (Debian's
# README.policy-rc.d; Docker's old mkimage scripts installed the same file).
POLICY_RC_D = "#!/bin/sh\n# labkit: no service starts at package install in a container\nexit 101\n"
# apt configuration as Docker's debian images carry it: drop the .debs after each install,
# never install Recommends/Suggests by default.
APT_CLEAN = ('DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
             '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
             'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
             '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
             'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n')
APT_NO_RECOMMENDS = 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'


class DebootstrapError(errors.LabkitError):
    """debootstrap ran and failed; the message carries its exit status and last lines."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint
        self._note_hint()


@dataclass(frozen=True, slots=True)
class Phase:
    """One step of debootstrap as its ``I:`` lines say it (``retrieving``, ``validating``,
    ``extracting``, ``unpacking``, ``configuring``...) and the package, if any."""

    name: str
    detail: str


_PHASES = {"Retrieving": "retrieving", "Validating": "validating", "Extracting": "extracting",
           "Unpacking": "unpacking", "Configuring": "configuring", "Installing": "installing",
           "Checking": "checking", "Resolving": "resolving", "Found": "resolving",
           "Base system installed": "done"}


def phase_of(line: str) -> Phase | None:
    """The phase a debootstrap output line announces (``I: Extracting bash...``), or None."""
    if not line.startswith("I: "):
        return None
    text = line[3:].strip().rstrip(".")
    for word, name in _PHASES.items():
        if text.startswith(word):
            return Phase(name, text[len(word):].strip())
    return Phase("other", text)


def parse_sources(texts: Iterable[tuple[str, str]], suite: str) -> list[str]:
    """Mirror URIs serving ``suite``, from (file name, text) pairs of apt sources files.

    ``*.list`` files hold one-line ``deb [opts] URI SUITE COMPONENTS`` entries; ``*.sources``
    files hold deb822 stanzas (Types/URIs/Suites).  Security and updates archives serve
    ``bookworm-security``/``bookworm-updates``, never the bare suite, so they do not match.
    """
    out: list[str] = []
    for name, text in texts:
        if name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.strip()
                if "deb" in fields.get("types", "").split() and \
                        suite in fields.get("suites", "").split() and \
                        fields.get("enabled", "yes").lower() != "no":
                    out += fields.get("uris", "").split()
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                    out.append(words[1])
    return [u for u in out if u.startswith(("http://", "https://"))]


def default_mirror(suite: str = SUITE, root: Path = _SOURCES) -> str:
    """The first http(s) mirror the host's apt sources use for ``suite``."""
    files = [root / "sources.list"] + sorted((root / "sources.list.d").glob("*"))
    texts = []
    for f in files:
        try:
            texts.append((f.name, f.read_text()))
        except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
            continue
    found = parse_sources(texts, suite)
    if not found:
        raise errors.NotFoundError(
            "Debian mirror", f"for {suite} in {root}/sources.list(.d)",
            hint="give one: --mirror http://deb.debian.org/debian")
    return found[0]


def check_args(suite: str, mirror: str) -> None:
    """Refuse a suite or mirror that is not a plain name / http(s) URL (they reach argv)."""
    if not _SUITE_RE.fullmatch(suite):
        raise errors.InvalidArgumentError("suite", f"{suite!r} is not a Debian suite name")
    if not re.fullmatch(r"https?://[A-Za-z0-9._~:/%@+-]+", mirror):
        raise errors.InvalidArgumentError(
            "mirror", f"{mirror!r}: an http:// or https:// URL is needed")


def debootstrap(dest: Path, *, suite: str = SUITE, mirror: str | None = None,
                cache: Path = CACHE_DIR, on_line: Callable[[str], None] | None = None) -> Path:
    """Run ``debootstrap --variant=minbase SUITE DEST MIRROR`` with the .deb cache.

    ``dest`` must not exist yet.  Each output line goes to ``on_line``.  Raises
    UnsupportedError when debootstrap is missing, ExternalCommandError (naming the last
    lines) when it fails.
    """
    deb = shutil.which("debootstrap")
    if deb is None:
        raise errors.UnsupportedError("debootstrap", "not installed",
                                      hint="apt-get install debootstrap")
    mirror = mirror or default_mirror(suite)
    check_args(suite, mirror)
    if dest.exists():
        raise errors.AlreadyExistsError("rootfs", str(dest), hint="give a new directory")
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    cache_dir = cache / f"{suite}-{arch}"
    cache_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    argv = ["unshare", "--mount", "--propagation", "private", deb, "--variant=minbase",
            f"--arch={arch}", f"--cache-dir={cache_dir}", suite, str(dest), mirror]
    tail: list[str] = []
    # One debootstrap at a time per cache: two would write the same .deb files (flock(2)).
    lock = os.open(cache_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env={**os.environ, "LC_ALL": "C",
                                                "DEBIAN_FRONTEND": "noninteractive"})
        assert proc.stdout is not None
        with proc:
            for line in proc.stdout:
                line = line.rstrip("\n")
                tail = (tail + [line])[-8:]
                if on_line is not None:
                    on_line(line)
    finally:
        os.close(lock)
    if proc.returncode != 0:
        raise DebootstrapError(
            f"debootstrap {suite} from {mirror} failed (exit {proc.returncode}): "
            + " | ".join(tail[-3:]), hint=f"is {mirror} reachable? its last lines are above")
    return dest


def _empty_dir(d: Path) -> None:
    if not d.is_dir() or d.is_symlink():
        return
    for p in d.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def clean_rootfs(root: Path) -> None:
    """Make a debootstrapped tree an image rootfs, as debuerreotype does for Docker's debian:

    apt lists, caches and logs emptied (they are stale the moment the image is built:
    ``apt-get update`` comes first in every Dockerfile); no machine-id (systemd's
    machine-id(5): an empty file means "generate at first boot"), no host identity
    (hostname, resolv.conf: the engine mounts its own); /dev emptied (layers carry no
    device nodes; the runtime mounts a tmpfs /dev); policy-rc.d so no service starts.
    """
    for d in ("var/lib/apt/lists", "var/cache/apt/archives", "var/log", "tmp", "var/tmp",
              "run", "dev", "debootstrap"):
        _empty_dir(root / d)
    shutil.rmtree(root / "debootstrap", ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    for pattern in ("var/cache/apt/*.bin", "var/cache/debconf/*-old", "var/lib/dpkg/*-old"):
        for p in root.glob(pattern):
            p.unlink()
    for f in ("var/lib/dbus/machine-id", "etc/resolv.conf", "etc/hostname"):
        (root / f).unlink(missing_ok=True)
    _write(root / "etc/machine-id", "", 0o444)
    _write(root / "etc/hostname", "localhost\n")
    _write(root / "etc/resolv.conf", "")
    _write(root / "usr/sbin/policy-rc.d", POLICY_RC_D, 0o755)
    _write(root / "etc/apt/apt.conf.d/docker-clean", APT_CLEAN)
    _write(root / "etc/apt/apt.conf.d/docker-no-recommends", APT_NO_RECOMMENDS)
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "var/tmp", 0o1777)
