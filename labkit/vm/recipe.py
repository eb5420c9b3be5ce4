"""What goes into the VM image, where it is cached, and the hash that names a build.

The image is named by a hash of its recipe (the provisioning script, the Python
requirements, the Debian suite, the agent and PID-1 script), so a changed recipe builds a
new image and an old one is never mistaken for it.  Two stages, each cached on its own:

    base-<base hash>/rootfs/     debootstrap + kernel + headers + bcc + venv (slow: minutes)
    images/<image hash>/         vmlinuz, initrd.img, rootfs.ext4, stamp.json (seconds)

Both are built under a temporary name and renamed into place at the end, so a half-built
stage (interrupted, out of space) is never reused; it is removed by the next build.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_CACHE = Path("/var/cache/labkit/vm")
# What the tests inside the VM need on top of labkit's own dependencies.
EXTRA_REQUIREMENTS = ("pytest>=8.0", "pytest-timeout>=2.3")


def cache_dir() -> Path:
    """$LABKIT_VM_CACHE, else /var/cache/labkit/vm: outside the repo, so clones share it."""
    return Path(os.environ.get("LABKIT_VM_CACHE") or DEFAULT_CACHE)


def requirements(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """labkit's runtime dependencies (from pyproject.toml) plus pytest, sorted."""
    deps: list[str] = []
    try:
        data = tomllib.loads(pyproject.read_text())
        deps = list(data.get("project", {}).get("dependencies", []))
    except (OSError, tomllib.TOMLDecodeError):
        pass
    return sorted(set(deps) | set(EXTRA_REQUIREMENTS))


def debian_packages(listing: Path = REPO / "scripts" / "debian-packages.txt") -> list[str]:
    """The Debian packages every labkit host installs (scripts/setup.sh reads the same file)."""
    try:
        lines = listing.read_text().splitlines()
    except OSError:
        return []
    return sorted({ln.split()[0] for ln in lines if ln.strip() and not ln.lstrip().startswith("#")})


def _apt_texts(sources: Path) -> list[str]:
    texts: list[str] = []
    for p in [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]:
        try:
            texts.append(p.read_text())
        except OSError:
            continue
    return texts


def _find_uri(sources: Path, tail: str) -> str | None:
    # deb822 "URIs: http://.../debian" or one-line "deb [opts] http://.../debian bookworm main"
    pat = re.compile(r"(?:URIs:\s*|^deb\s+(?:\[[^]]*\]\s+)?)(\S+/" + tail + r")/?\s",
                     re.MULTILINE)
    for text in _apt_texts(sources):
        if m := pat.search(text):
            return m.group(1)
    return None


def host_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this host's apt uses (debootstrap must reach the same one)."""
    return _find_uri(sources, "debian") or DEFAULT_MIRROR


def host_security_mirror(sources: Path = Path("/etc/apt")) -> str | None:
    """The host's debian-security mirror, or None when it uses none (then the image has none)."""
    return _find_uri(sources, "debian-security")


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the image's content; ``base_hash``/``image_hash`` name it."""

    suite: str
    requirements: tuple[str, ...]
    provision: bytes
    init: bytes
    agent: bytes
    packages: tuple[str, ...] = ()

    @classmethod
    def current(cls) -> Recipe:
        return cls(
            suite=SUITE,
            requirements=tuple(requirements()),
            provision=(HERE / "provision.sh").read_bytes(),
            init=(HERE / "init.sh").read_bytes(),
            agent=(HERE / "agent.py").read_bytes(),
            packages=tuple(debian_packages()),
        )

    @property
    def base_hash(self) -> str:
        h = hashlib.sha256(b"base\0" + self.suite.encode() + b"\0")
        h.update("\n".join(self.requirements).encode() + b"\0" + self.provision)
        h.update(b"\0" + " ".join(self.packages).encode())
        return h.hexdigest()[:16]

    @property
    def image_hash(self) -> str:
        h = hashlib.sha256(self.base_hash.encode() + b"\0" + self.init + b"\0" + self.agent)
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class Layout:
    """Paths under the cache directory for one recipe."""

    root: Path
    recipe: Recipe

    @property
    def base(self) -> Path:
        return self.root / f"base-{self.recipe.base_hash}"

    @property
    def image(self) -> Path:
        return self.root / "images" / self.recipe.image_hash

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "build.log"
