"""What ``docker images`` filters on and ``docker history`` shows, from the stored configs.

Filters as moby's daemon/images/images.go has them: ``dangling`` (true/false), ``label``
(key or key=value), ``reference`` (a glob on repository or repository:tag, path.Match
rules), ``before`` / ``since`` (images created before/after the named image).  Any other
filter key is refused by name, never ignored.
"""

from __future__ import annotations

import calendar
import fnmatch
import time
from collections.abc import Callable
from typing import Any

from labkit import errors
from labkit.engine.images.store import Image, dir_size

__all__ = ["LIST_FILTERS", "created_epoch", "filter_images", "history", "labels_of", "parse_bool"]

LIST_FILTERS = ("dangling", "label", "reference", "before", "since")


def created_epoch(img: Image) -> int:
    """The config's RFC 3339 ``created`` in unix seconds (0 when absent or unreadable)."""
    raw = str(img.config.get("created") or "")
    try:
        return calendar.timegm(time.strptime(raw[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0


def labels_of(img: Image) -> dict[str, str]:
    labels = img.container_config.get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def parse_bool(key: str, values: list[str]) -> bool:
    if len(values) != 1 or values[0].lower() not in ("true", "false", "1", "0"):
        raise errors.InvalidArgumentError("filters", f"invalid filter '{key}={values}'")
    return values[0].lower() in ("true", "1")


def _label_ok(labels: dict[str, str], want: list[str]) -> bool:
    def has(spec: str) -> bool:
        k, eq, v = spec.partition("=")
        return k in labels and (not eq or labels[k] == v)
    return all(has(s) for s in want)


def _ref_ok(img: Image, patterns: list[str]) -> bool:
    # path.Match semantics: "*" does not cross "/" -- fnmatch's does, so split on "/".
    def match(pat: str, name: str) -> bool:
        p, n = pat.split("/"), name.split("/")
        return len(p) == len(n) and all(fnmatch.fnmatchcase(a, b) for b, a in zip(p, n, strict=True))
    for tag in img.tags:
        repo = tag.rsplit(":", 1)[0]
        if any(match(p, tag) or match(p, repo) for p in patterns):
            return True
    return False


def filter_images(images: list[Image], filters: dict[str, list[str]],
                  resolve: Callable[[str], Image]) -> list[Image]:
    """The images that pass every filter (``resolve`` names the before/since image)."""
    for key in filters:
        if key not in LIST_FILTERS:
            raise errors.InvalidArgumentError("filters", f"invalid filter '{key}'",
                                              hint=f"image filters: {', '.join(LIST_FILTERS)}")
    out = images
    if "dangling" in filters:
        want = parse_bool("dangling", filters["dangling"])
        out = [i for i in out if (not i.tags) == want]
    if filters.get("label"):
        out = [i for i in out if _label_ok(labels_of(i), filters["label"])]
    if filters.get("reference"):
        out = [i for i in out if _ref_ok(i, filters["reference"])]
    for ref in filters.get("before", []):
        pivot = created_epoch(resolve(ref))
        out = [i for i in out if created_epoch(i) < pivot]
    for ref in filters.get("since", []):
        pivot = created_epoch(resolve(ref))
        out = [i for i in out if created_epoch(i) > pivot]
    return out


def history(img: Image) -> list[dict[str, Any]]:
    """GET /images/{name}/history: one row per config history entry, newest first; rows
    that made a layer carry that layer's size (moby image/history.go)."""
    rows: list[dict[str, Any]] = []
    layers = list(img.layers)
    entries = img.config.get("history") or [{} for _ in layers]
    for h in entries:
        empty = bool(h.get("empty_layer"))
        size = 0
        if not empty and layers:
            size = dir_size(layers.pop(0))
        created = created_epoch(Image(img.id, (), {"created": h.get("created")}, (), 0))
        rows.append({"Id": "<missing>", "Created": created,
                     "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                     "Comment": h.get("comment", "")})
    rows.reverse()
    if rows:
        rows[0]["Id"], rows[0]["Tags"] = img.id, list(img.tags) or None
    return rows
