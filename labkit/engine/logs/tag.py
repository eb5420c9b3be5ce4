"""Docker's log tag templates ("log tags" in Docker's logging docs), rendered safely.

Docker renders ``--log-opt tag`` with Go's text/template over the container's info; the
documented markup is ``{{.ID}}``, ``{{.FullID}}``, ``{{.Name}}``, ``{{.ImageID}}``,
``{{.ImageFullID}}``, ``{{.ImageName}}`` and ``{{.DaemonName}}``.  labkit substitutes exactly
those fields and nothing else: a template is data from an API body, so anything else between
``{{`` and ``}}`` (functions, pipelines, ranges) is refused by name instead of evaluated.
"""

from __future__ import annotations

import re

from labkit import errors

DEFAULT = "{{.ID}}"
FIELDS = ("ID", "FullID", "Name", "ImageID", "ImageFullID", "ImageName", "DaemonName")
_ACTION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_FIELD = re.compile(r"\s*\.([A-Za-z]+)\s*")
MAX_TAG = 1024  # a tag is a short name; a huge one would only bloat every message


def _short(full: str) -> str:
    return full.split(":", 1)[-1][:12]


def values(ctx: dict[str, str]) -> dict[str, str]:
    """The template fields from a log context (drivers.context)."""
    return {"ID": ctx.get("id", "")[:12], "FullID": ctx.get("id", ""),
            "Name": ctx.get("name", "").lstrip("/"), "ImageID": _short(ctx.get("image_id", "")),
            "ImageFullID": ctx.get("image_id", ""), "ImageName": ctx.get("image_name", ""),
            "DaemonName": "labkit"}


def check(template: str) -> None:
    """Refuse a template that uses anything but the documented fields."""
    render(template, {})


def render(template: str, ctx: dict[str, str]) -> str:
    """``template`` with each ``{{.Field}}`` replaced; InvalidArgumentError on any other
    action or an unclosed ``{{``."""
    vals = values(ctx)

    def sub(m: re.Match[str]) -> str:
        f = _FIELD.fullmatch(m.group(1))
        if f is None or f.group(1) not in FIELDS:
            raise errors.InvalidArgumentError(
                "log-opt tag", f"template action {m.group(0)!r} is not supported",
                hint="use only " + ", ".join("{{." + n + "}}" for n in FIELDS))
        return vals[f.group(1)]
    out = _ACTION.sub(sub, template)
    if "{{" in _ACTION.sub("", template):
        raise errors.InvalidArgumentError("log-opt tag", "template has an unclosed '{{'")
    if len(out) > MAX_TAG:
        raise errors.InvalidArgumentError("log-opt tag", f"longer than {MAX_TAG} bytes")
    return out
