"""OCI images: content-addressed blobs, layers (tar <-> overlay), the overlay snapshotter.

The union-filesystem flow, all with public names::

    write_layer(dir1, "l1.tar.gz"); write_layer(dir2, "l2.tar.gz")   # dirs -> layer blobs
    apply_layer("l1.tar.gz", lower1); apply_layer("l2.tar.gz", lower2)  # blobs -> lower dirs
    m = prepare([lower2, lower1], upper, work, merged)   # a description (top lower first)
    mount(m)                                             # ... write/delete through merged ...
    changes(upper)                                       # copy-ups, whiteouts, opaque dirs
    unmount(merged); write_layer(upper, "l3.tar.gz")     # the container's changes as a layer
"""

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
