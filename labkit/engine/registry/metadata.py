"""What labkit remembers about layers and registries (moby distribution/metadata v2metadata).

A layer is known locally by its diff_id (the sha256 of the uncompressed tar); a registry
knows it by the digest of the compressed blob.  After a pull or a push labkit records, per
registry domain, ``digest -> diff_id`` and ``diff_id -> [(digest, repository)]``.  A pull then
skips a blob whose digest it knows to be a layer already present; a push first asks the
registry for a remembered digest (HEAD) and, when it is there, neither re-compresses nor
uploads the layer ("Layer already exists").

The map is one JSON file in the image store (``distribution.json``), written atomically
under the store lock.  It holds no credentials.
"""

from __future__ import annotations

import json
from typing import Any

from labkit.engine.images.store import ImageStore, _atomic_write

__all__ = ["DigestMap"]

_FILE = "distribution.json"
_MAX_PER_LAYER = 20  # remembered (digest, repo) pairs per layer and registry


class DigestMap:
    """The per-registry digest <-> diff_id map of ``store``."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads((self.store.root / _FILE).read_bytes())
            return doc if isinstance(doc, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}

    def diff_id(self, registry: str, digest: str) -> str | None:
        """The diff_id a blob ``digest`` of ``registry`` unpacks to, if known."""
        v = self._read().get(registry, {}).get("diff_ids", {}).get(digest)
        return v if isinstance(v, str) else None

    def digests(self, registry: str, diff_id: str) -> list[tuple[str, str]]:
        """(digest, repository) pairs known for ``diff_id`` on ``registry``, newest first."""
        got = self._read().get(registry, {}).get("digests", {}).get(diff_id, [])
        return [(str(d), str(r)) for d, r in got if isinstance(d, str)] \
            if isinstance(got, list) else []

    def remember(self, registry: str, digest: str, diff_id: str, repository: str) -> None:
        with self.store.locked():
            doc = self._read()
            reg = doc.setdefault(registry, {})
            reg.setdefault("diff_ids", {})[digest] = diff_id
            pairs = [p for p in reg.setdefault("digests", {}).get(diff_id, [])
                     if p != [digest, repository]]
            reg["digests"][diff_id] = [[digest, repository], *pairs][:_MAX_PER_LAYER]
            _atomic_write(self.store.root / _FILE, json.dumps(doc, sort_keys=True).encode())
