"""The real peers that labkit is measured and tested against, found where a user has them.

A user's fresh machine has the Docker CLI wherever its package put it (Debian's docker.io:
/usr/bin/docker; Docker's own packages or a manual install: /usr/local/bin/docker), so it is
looked up on PATH, never at a fixed path.  ``make setup`` installs docker.io where no CLI is
found (labkit/measure/install-docker-io.sh), without starting its daemon.
"""

from __future__ import annotations

import shutil

from labkit import errors

__all__ = ["debian_docker_cli", "docker_cli"]

_HINT = ("install one: labkit/measure/install-docker-io.sh (make setup runs it where no `docker`"
         " is found; it starts no daemon)")


def docker_cli() -> str:
    """The absolute path of the Docker CLI on PATH; UnsupportedError with a hint if none."""
    path = shutil.which("docker")
    if path is None:
        raise errors.UnsupportedError("the Docker CLI", "no `docker` on PATH", hint=_HINT)
    return path


DEBIAN_DOCKER = "/usr/bin/docker"  # where Debian's docker.io puts its CLI (dpkg -L docker.io)


def debian_docker_cli() -> str:
    """Debian docker.io's own ``docker`` when that package is installed (a newer CLI earlier
    on PATH, /usr/local/bin say, is passed over: a benchmark names the CLI it drives), else
    the one on PATH (docker_cli())."""
    import subprocess

    if shutil.which("dpkg-query") is None:
        return docker_cli()
    p = subprocess.run(["dpkg-query", "-S", DEBIAN_DOCKER], capture_output=True, text=True,
                       check=False)
    if p.returncode == 0 and p.stdout.split(":", 1)[0].strip() == "docker.io":
        return DEBIAN_DOCKER
    return docker_cli()
