"""OCI images: content-addressed blobs, layers (tar <-> overlay), the overlay snapshotter.

The union-filesystem flow, all with public names::

    write_layer(dir1, "l1.tar.gz"); write_layer(dir2, "l2.tar.gz")   # dirs -> layer blobs
    apply_layer("l1.tar.gz", lower1); apply_layer("l2.tar.gz", lower2)  # blobs -> lower dirs
    m = prepare([lower2, lower1], upper, work, merged)   # a description (top lower first)
    mount(m)                                             # ... write/delete through merged ...
    changes(upper)                                       # copy-ups, whiteouts, opaque dirs
    unmount(merged); write_layer(upper, "l3.tar.gz")     # the container's changes as a layer
"""

from __future__ import annotations

# Lazy re-exports (PEP 562): importing one submodule (labkit.engine.images.busybox, say)
# runs this file first, and the eager imports cost ~40 ms (tarfile, gzip, hashlib, the
# overlay and mount helpers) before the submodule's own work.  Names load on first use;
# importlib too (~0.5 ms): the runtime's start path imports images.mountopts only.
# Not typing.TYPE_CHECKING (typing costs ~1.5 ms); mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from labkit.engine.images.busybox import build_rootfs, pack_rootfs_layer
    from labkit.engine.images.diff import Change, changes, classify_mode, whiteout_name, write_layer
    from labkit.engine.images.digest import (
        format_digest,
        parse_digest,
        sha256_bytes,
        sha256_file,
        sha256_stream,
        verify_bytes,
        verify_file,
    )
    from labkit.engine.images.layers import (
        FLATTEN,
        OVERLAY,
        LayerDigests,
        LayerEntry,
        LayerPlan,
        apply_layer,
        inspect_layer,
        scoped_path,
    )
    from labkit.engine.images.mounts import (
        FLAG_OPTIONS,
        PROPAGATION_FLAGS,
        Mount,
        MountCall,
        mount,
        mount_all,
        unmount,
    )
    from labkit.engine.images.overlay import MAX_LOWERS, OPAQUE_XATTR, mount_overlay, prepare

_LAZY = {
    "build_rootfs": "labkit.engine.images.busybox",
    "pack_rootfs_layer": "labkit.engine.images.busybox",
    "Change": "labkit.engine.images.diff",
    "changes": "labkit.engine.images.diff",
    "classify_mode": "labkit.engine.images.diff",
    "whiteout_name": "labkit.engine.images.diff",
    "write_layer": "labkit.engine.images.diff",
    "format_digest": "labkit.engine.images.digest",
    "parse_digest": "labkit.engine.images.digest",
    "sha256_bytes": "labkit.engine.images.digest",
    "sha256_file": "labkit.engine.images.digest",
    "sha256_stream": "labkit.engine.images.digest",
    "verify_bytes": "labkit.engine.images.digest",
    "verify_file": "labkit.engine.images.digest",
    "FLATTEN": "labkit.engine.images.layers",
    "OVERLAY": "labkit.engine.images.layers",
    "LayerDigests": "labkit.engine.images.layers",
    "LayerEntry": "labkit.engine.images.layers",
    "LayerPlan": "labkit.engine.images.layers",
    "apply_layer": "labkit.engine.images.layers",
    "inspect_layer": "labkit.engine.images.layers",
    "scoped_path": "labkit.engine.images.layers",
    "FLAG_OPTIONS": "labkit.engine.images.mountopts",
    "PROPAGATION_FLAGS": "labkit.engine.images.mountopts",
    "Mount": "labkit.engine.images.mounts",
    "MountCall": "labkit.engine.images.mounts",
    "mount": "labkit.engine.images.mounts",
    "mount_all": "labkit.engine.images.mounts",
    "unmount": "labkit.engine.images.mounts",
    "MAX_LOWERS": "labkit.engine.images.overlay",
    "OPAQUE_XATTR": "labkit.engine.images.overlay",
    "mount_overlay": "labkit.engine.images.overlay",
    "prepare": "labkit.engine.images.overlay",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "FLAG_OPTIONS",
    "FLATTEN",
    "MAX_LOWERS",
    "OPAQUE_XATTR",
    "OVERLAY",
    "PROPAGATION_FLAGS",
    "Change",
    "LayerDigests",
    "LayerEntry",
    "LayerPlan",
    "Mount",
    "MountCall",
    "apply_layer",
    "build_rootfs",
    "changes",
    "classify_mode",
    "format_digest",
    "inspect_layer",
    "mount",
    "mount_all",
    "mount_overlay",
    "pack_rootfs_layer",
    "parse_digest",
    "prepare",
    "scoped_path",
    "sha256_bytes",
    "sha256_file",
    "sha256_stream",
    "unmount",
    "verify_bytes",
    "verify_file",
    "whiteout_name",
    "write_layer",
]
