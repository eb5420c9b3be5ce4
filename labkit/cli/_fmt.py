"""Docker's text output: tabwriter tables, HumanDuration, the ps row model, Go-template subset.

Matches the Docker CLI (docker/cli ``formatter``): tables go through a tabwriter with
minwidth 10, padding 3; ``--format`` takes ``table`` plus ``{{.Field}}``, ``{{.A.B}}``,
``{{json .}}``, ``{{json .Field}}``, ``{{upper .F}}``, ``{{lower .F}}``, and ``\\t``/``\\n``
escapes.  Anything else in ``{{ }}`` is an InvalidArgumentError naming the action.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from labkit import errors
from labkit._units import human_duration

__all__ = [
    "PS_DEFAULT",
    "PS_HEADERS",
    "ellipsis",
    "human_duration",
    "human_size",
    "natural_key",
    "ps_row",
    "render",
    "render_rows",
    "tabwrite",
]

PS_DEFAULT = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
              "{{.Ports}}\t{{.Names}}")
PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
              "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
              "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES"}


def human_size(n: float) -> str:
    """go-units HumanSize (decimal, 4 significant digits): 0B, 1.5kB, 12.3MB."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.4g}{units[i]}"


def natural_key(text: str) -> list[tuple[int, int, str]]:
    """A sort key in natural order (fvbommel/sortorder NaturalLess, which docker/cli uses for
    `network ls` and `port`): digit runs compare as numbers, so net2 sorts before net10."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p)
            for p in re.split(r"(\d+)", text) if p]


def ellipsis(text: str, width: int) -> str:
    """Cut to ``width`` characters ending in "…" (docker/cli stringutils.Ellipsis)."""
    if len(text) <= width:
        return text
    return text[:1] if width == 1 else text[:width - 1] + "…"


def tabwrite(rows: Sequence[Sequence[str]], minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter (padchar ' '): every cell but a line's last is padded."""
    widths: list[int] = []
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            w = max(minwidth, len(cell) + padding)
            if i == len(widths):
                widths.append(w)
            else:
                widths[i] = max(widths[i], w)
    out = []
    for row in rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(row[:-1])]
        out.append("".join(cells) + (row[-1] if row else ""))
    return "".join(line.rstrip(" ") + "\n" if not line.strip() else line + "\n" for line in out)


def _ports(ports: Any) -> str:
    parts = []
    for p in ports or []:
        target = f"{p.get('PrivatePort')}/{p.get('Type', 'tcp')}"
        if p.get("PublicPort"):
            parts.append(f"{p.get('IP', '0.0.0.0')}:{p['PublicPort']}->{target}")
        else:
            parts.append(target)
    return ", ".join(parts)


def _image(c: Mapping[str, Any], trunc: bool) -> str:
    """docker/cli ContainerContext.Image: an image shown by ID (its name went) is cut to 12."""
    image = str(c.get("Image", ""))
    if trunc and image.startswith("sha256:") and image == c.get("ImageID"):
        return image[7:19]
    return image


def ps_row(c: Mapping[str, Any], trunc: bool = True, now: float | None = None) -> dict[str, str]:
    """One `docker ps` row (the fields --format sees) from a GET /containers/json entry."""
    now = time.time() if now is None else now
    cid = str(c.get("Id", ""))
    command = str(c.get("Command", ""))
    # docker/cli cuts to 20 characters first, then quotes (strconv.Quote).
    command = json.dumps(ellipsis(command, 20) if trunc else command, ensure_ascii=False)
    names = [n.lstrip("/") for n in c.get("Names") or [] if n.count("/") <= 1]
    created = float(c.get("Created") or 0)
    labels = c.get("Labels") or {}
    return {
        "Command": command,
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(created)),
        "ID": cid[:12] if trunc else cid,
        "Image": _image(c, trunc),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Type") == "volume")),
        "Mounts": ",".join(str(m.get("Name") or m.get("Source", ""))
                           for m in c.get("Mounts") or []),
        "Names": ",".join(names),
        "Networks": ",".join(sorted((c.get("NetworkSettings") or {}).get("Networks") or {})),
        "Ports": _ports(c.get("Ports")),
        "RunningFor": human_duration(now - created) + " ago",
        "Size": human_size(float(c.get("SizeRw") or 0)),
        "State": str(c.get("State", "")),
        "Status": str(c.get("Status", "")),
    }


_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")


def _lookup(obj: Any, path: str) -> Any:
    if path == ".":
        return obj
    for part in path.strip(".").split("."):
        if isinstance(obj, Mapping) and part in obj:
            obj = obj[part]
        else:
            raise errors.InvalidArgumentError(
                "--format", f"can't evaluate field {part} in {type(obj).__name__}",
                hint="fields are case-sensitive, e.g. {{.ID}} {{.Names}} {{.Status}}")
    return obj


def _text(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_text(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_text(v) for v in value) + "]"
    return str(value)


def _action(expr: str, obj: Any) -> str:
    words = expr.split()
    if len(words) == 1 and words[0].startswith("."):
        return _text(_lookup(obj, words[0]))
    if len(words) == 2 and words[1].startswith("."):
        value = _lookup(obj, words[1])
        if words[0] == "json":
            return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        if words[0] == "upper":
            return _text(value).upper()
        if words[0] == "lower":
            return _text(value).lower()
    raise errors.InvalidArgumentError("--format", f"unsupported template action {{{{{expr}}}}}",
                                      hint="supported: {{.Field}} {{.A.B}} {{json .}} "
                                           "{{json .Field}} {{upper .F}} {{lower .F}}")


def render(template: str, obj: Any) -> str:
    """Expand one Go-template line against ``obj`` (a dict)."""
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    return _ACTION.sub(lambda m: _action(m.group(1), obj), template)


def render_rows(template: str, rows: Sequence[Mapping[str, Any]],
                headers: Mapping[str, str] | None = None) -> str:
    """--format output for rows: a tabwriter table for ``table ...``, else one line each."""
    if template.startswith("table"):
        body = template[len("table"):].strip() or PS_DEFAULT[len("table "):]
        head = _ACTION.sub(lambda m: (headers or {}).get(m.group(1).lstrip("."),
                                                         m.group(1).lstrip(".").upper()),
                           body.replace("\\t", "\t"))
        lines = [head] + [render(body, r) for r in rows]
        return tabwrite([line.split("\t") for line in lines])
    return "".join(render(template, r) + "\n" for r in rows)
