"""The image store's root is an OCI image layout a real reader accepts: podman pulls
busybox from it through the ``oci:`` transport and gets labkit's image ID."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from labkit.engine.images.store import ImageStore, ensure_busybox

pytestmark = pytest.mark.privileged


def test_podman_reads_the_store_as_an_oci_layout() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman is not installed (the OCI-layout reader of this test)")
    base = Path(tempfile.mkdtemp(prefix="lk-oci-"))
    store = ImageStore(base / "store")
    pod = [podman, "--root", str(base / "proot"), "--runroot", str(base / "prun")]
    try:
        img = ensure_busybox(store)
        r = subprocess.run([*pod, "pull", "-q", f"oci:{store.root}:busybox:latest"],
                           capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == img.id[7:]
    finally:
        subprocess.run([*pod, "system", "reset", "-f"], capture_output=True, timeout=120,
                       check=False)
        shutil.rmtree(base, ignore_errors=True)
