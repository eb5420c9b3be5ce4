"""The build context: the tar body of ``POST /build`` unpacked into a private directory.

The tar comes from any client, so nothing in it is trusted (the checks of images/layers.py,
for a context): a member with an absolute path or a ``..`` component is refused; every write
goes through a directory fd opened without following symlinks (_rootdir.RootDir,
follow=False), so a symlink the tar made earlier (``link -> /etc``) can never carry a later
member (``link/passwd``) out of the context; a hard link must name a regular file the tar
already put inside; devices and fifos are refused.  The body may be gzip, bzip2 or xz
compressed, as the Docker CLI and docker-py may send it.  ``.dockerignore`` (ignore.py) is
applied here too, for clients that do not apply it themselves.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path

from labkit import errors
from labkit._sys.inroot import open_in_root
from labkit.engine.build.ignore import Ignore
from labkit.engine.images._rootdir import RootDir

__all__ = ["clean_member", "read_file", "remove_file", "unpack_context"]

_CHUNK = 1 << 20


def _refuse(name: str, problem: str) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError("build context", f"member {name!r}: {problem}")


def clean_member(name: str) -> str:
    """A member name as a clean relative path; absolute paths and ``..`` are refused."""
    if name.startswith("/"):
        raise _refuse(name, "absolute paths are refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _refuse(name, "'..' would leave the build context")
    return "/".join(parts)


def _ignore_of(tf: tarfile.TarFile, dockerfile: str) -> Ignore:
    """Read ``.dockerignore`` first (it decides what is unpacked)."""
    text = ""
    for ti in tf.getmembers():
        if clean_member(ti.name) == ".dockerignore" and ti.isreg() and ti.size < (1 << 20):
            f = tf.extractfile(ti)
            text = f.read().decode("utf-8", "replace") if f else ""
    return Ignore(text, always=(dockerfile, ".dockerignore"))


def unpack_context(src: Path, dest: Path, dockerfile: str = "Dockerfile") -> list[str]:
    """Unpack the context tar ``src`` (plain or compressed) into the empty dir ``dest``.

    Returns the always-sent files (Dockerfile, .dockerignore) that ``.dockerignore``
    excludes: the caller removes them once the Dockerfile is read, so ``COPY .`` does not
    copy them (moby remotecontext removeDockerfile).  Raises InvalidArgumentError naming the
    member for a hostile or unreadable tar.
    """
    try:
        tf = tarfile.open(src, mode="r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as e:
        raise errors.InvalidArgumentError("build context", f"not a tar archive: {e}") from None
    root = RootDir(os.fspath(dest), follow=False)
    try:
        with tf:
            ignore = _ignore_of(tf, dockerfile)
            regular: set[str] = set()
            for ti in tf.getmembers():
                rel = clean_member(ti.name)
                if not rel or ignore.excluded(rel):
                    continue
                _write(tf, ti, rel, root, regular)
            return [a for a in (dockerfile, ".dockerignore")
                    if ignore.excluded(a, honour_always=False)]
    except tarfile.TarError as e:
        raise errors.InvalidArgumentError("build context", f"unreadable tar: {e}") from None
    finally:
        root.close()


def _write(tf: tarfile.TarFile, ti: tarfile.TarInfo, rel: str, root: RootDir,
           regular: set[str]) -> None:
    try:
        pfd, base = root.parent(rel, create=True)
    except OSError as e:  # ELOOP: a symlink on the way; ENOTDIR: a file on the way
        raise _refuse(ti.name, f"its parent is a symlink or a file ({e.strerror}): links "
                      "may not lead members out of the context") from None
    try:
        if not ti.isdir():
            _unlink_old(pfd, base)
        mode = stat.S_IMODE(ti.mode) & 0o777  # no setuid/setgid/sticky from a context
        if ti.isdir():
            try:
                os.mkdir(base, 0o755, dir_fd=pfd)
            except FileExistsError:
                if not stat.S_ISDIR(os.stat(base, dir_fd=pfd, follow_symlinks=False).st_mode):
                    raise _refuse(ti.name, "a directory over a non-directory") from None
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=pfd)
            try:
                os.fchmod(fd, mode | 0o700)  # we must be able to write into it
            finally:
                os.close(fd)
        elif ti.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, mode, dir_fd=pfd)
            with os.fdopen(fd, "wb") as w:
                f = tf.extractfile(ti)
                if f is not None:
                    shutil.copyfileobj(f, w, _CHUNK)
                os.fchmod(w.fileno(), mode)
            regular.add(rel)
        elif ti.issym():
            os.symlink(ti.linkname, base, dir_fd=pfd)  # a link is data; never followed here
        elif ti.islnk():
            target = clean_member(ti.linkname)
            if target not in regular:
                raise _refuse(ti.name, f"hard link to {ti.linkname!r}, which is not a regular "
                              "file earlier in the context")
            tpfd, tbase = root.parent(target)
            try:
                os.link(tbase, base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(tpfd)
            regular.add(rel)
        else:
            raise _refuse(ti.name, "devices, fifos and other special files are refused")
    finally:
        os.close(pfd)


def _unlink_old(pfd: int, base: str) -> None:
    """A later member replaces an earlier one of the same name (tar semantics)."""
    try:
        st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise errors.InvalidArgumentError("build context", f"{base!r}: a file over a directory")
    os.unlink(base, dir_fd=pfd)


def remove_file(ctx: Path, rel: str) -> None:
    """Delete one file of the context (no link followed; missing is fine)."""
    root = RootDir(os.fspath(ctx), follow=False)
    try:
        pfd, base = root.parent(clean_member(rel))
    except OSError:
        return
    finally:
        root.close()
    try:
        os.unlink(base, dir_fd=pfd)
    except (FileNotFoundError, IsADirectoryError):
        pass
    finally:
        os.close(pfd)


def read_file(ctx: Path, rel: str, what: str, limit: int = 1 << 20) -> bytes:
    """A regular file inside the context (symlinks followed, clamped at the context root)."""
    clean = posixpath.normpath("/" + rel).lstrip("/")
    rootfd = os.open(ctx, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_in_root(rootfd, clean, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        raise errors.InvalidArgumentError(
            what, f"Cannot locate specified Dockerfile: {rel}") from None
    finally:
        os.close(rootfd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise errors.InvalidArgumentError(what, f"{rel} is not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise errors.InvalidArgumentError(what, f"{rel} is over {limit} bytes")
    return data
