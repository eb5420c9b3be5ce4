"""bundle.layer_lookup reads /etc/passwd and /etc/group as the container sees them, and an
image's symlinks never make it read the host's files (found by the opts review)."""

from __future__ import annotations

import os
from pathlib import Path

from labkit.engine.containers.bundle import layer_lookup


def test_top_layer_first_then_lower(tmp_path: Path) -> None:
    top, low = tmp_path / "top", tmp_path / "low"
    (top / "etc").mkdir(parents=True)
    (low / "etc").mkdir(parents=True)
    (low / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (low / "etc" / "group").write_text("root:x:0:\n")
    (top / "etc" / "group").write_text("wheel:x:10:\n")
    look = layer_lookup([top, low])
    assert look("/etc/passwd") == "root:x:0:0::/root:/bin/sh\n"
    assert look("/etc/group") == "wheel:x:10:\n"
    assert look("/etc/shadow") is None


def test_symlinks_resolve_inside_the_layer_never_on_the_host(tmp_path: Path) -> None:
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "passwd").write_text("secret-host-user:x:0:0::/:/bin/sh\n")
    layer = tmp_path / "layer"
    layer.mkdir()
    os.symlink(str(host / "etc"), layer / "etc")            # etc -> <host>/etc (absolute)
    look = layer_lookup([layer])
    assert look("/etc/passwd") is None                       # resolved inside the layer: none
    inner = tmp_path / "inner"
    (inner / "usr" / "etc").mkdir(parents=True)
    (inner / "usr" / "etc" / "passwd").write_text("img:x:1:1::/:/bin/sh\n")
    os.symlink("/usr/etc", inner / "etc")                    # absolute, inside the image
    assert layer_lookup([inner])("/etc/passwd") == "img:x:1:1::/:/bin/sh\n"
    evil = tmp_path / "evil"
    (evil / "etc").mkdir(parents=True)
    os.symlink(str(host / "etc" / "passwd"), evil / "etc" / "passwd")  # the file itself
    assert layer_lookup([evil])("/etc/passwd") is None


def test_a_fifo_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    os.mkfifo(tmp_path / "etc" / "passwd")
    assert layer_lookup([tmp_path])("/etc/passwd") is None   # and does not block
