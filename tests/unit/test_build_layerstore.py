"""Step images and the layer cache (labkit.engine.build.layerstore), on a temp image store."""

from __future__ import annotations

from pathlib import Path

from labkit.engine.build import layerstore as L
from labkit.engine.images.store import ImageStore

CFG = {"architecture": "amd64", "os": "linux", "config": {"Env": ["A=1"]},
       "rootfs": {"type": "layers", "diff_ids": []}, "history": []}


def test_step_image_lives_while_any_build_holds_it(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    with L.step_image(store, CFG) as outer:
        with L.step_image(store, CFG) as inner:
            assert inner == outer == L.image_id_of(CFG)
        assert outer in store.ids()  # the other build still runs from it
        assert L.leftover_steps(store) == [outer[7:]]
    assert outer not in store.ids() and L.leftover_steps(store) == []


def test_step_image_kept_or_existing_is_not_dropped(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    with L.step_image(store, CFG, keep=lambda: True) as iid:
        pass
    assert iid in store.ids() and L.leftover_steps(store) == []  # an intermediate image now
    other = {**CFG, "config": {"Env": ["B=2"]}}
    img = store.add_raw(L.config_bytes(other), ["lk/x:1"])
    with L.step_image(store, other):
        pass
    assert img.id in store.ids()  # it was an image before the build: never dropped


def test_cache_entries_need_their_layers(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    key = L.cache_key("sha256:" + "0" * 64, "RUN true", "[]")
    assert L.cache_get(store, key) is None
    L.cache_put(store, key, CFG)
    assert L.cache_get(store, key) == CFG
    missing = {**CFG, "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]}}
    L.cache_put(store, key, missing)
    assert L.cache_get(store, key) is None  # its layer was deleted: a miss, not a broken image
    assert L.cache_key("p", "RUN a", "[]") != L.cache_key("p", "RUN a", '[["X", "1"]]')
    assert L.cache_prune(store)[0] == 1 and L.cache_get(store, key) is None
