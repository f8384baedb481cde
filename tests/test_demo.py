"""Issue 15 #12: the demo rebuilds what a changed setting invalidates, reuses the rest, and never
leaves a half-built folder; on one tiny family, in both orders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layerprobe.demo import DemoConfig, run_demo
from layerprobe.testing import images as synthetic
from layerprobe.testing.images import CLASS_NAMES, make_dataset


def _counts(root: Path) -> list[int]:
    return [len(list((root / c).glob("*.png"))) for c in CLASS_NAMES]


def test_make_dataset_rebuilds_on_other_settings_and_never_leaves_half_a_tree(tmp_path: Path, monkeypatch) -> None:
    root = make_dataset(tmp_path / "ds", n_per_class=3, size=16)
    assert _counts(root) == [3, 3, 3]
    first = {p.name: p.read_bytes() for p in root.rglob("*.png")}
    assert make_dataset(root, n_per_class=3, size=16) == root  # reused: same bytes, nothing rewritten
    assert {p.name: p.read_bytes() for p in root.rglob("*.png")} == first
    real, calls = synthetic.make_image, []

    def dies_half_way(label, rng, size=224):
        calls.append(label)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(label, rng, size)

    monkeypatch.setattr(synthetic, "make_image", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        make_dataset(root, n_per_class=2, size=16)
    assert {p.name: p.read_bytes() for p in root.rglob("*.png")} == first  # the old tree is untouched
    monkeypatch.setattr(synthetic, "make_image", real)
    assert _counts(make_dataset(root, n_per_class=2, size=16)) == [2, 2, 2]  # fewer: no stale files left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no partial folder left beside it


def test_make_dataset_refuses_to_replace_a_folder_it_did_not_make(tmp_path: Path) -> None:
    from layerprobe.errors import LayerprobeError

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(LayerprobeError, match="not a synthetic dataset"):
        make_dataset(tmp_path / "mine", n_per_class=2, size=16)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def _demo(out: Path, n: int):
    cfg = DemoConfig(out=out, families=("llava",), n_per_class=n, image_size=32, seeds=(0,), device="cpu", progress=False, finetune=False)
    return run_demo(cfg, log=lambda _: None)


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("order", [(10, 12), (12, 10)])
def test_a_changed_setting_rebuilds_and_a_plain_rerun_reuses(tmp_path: Path, order: tuple[int, int]) -> None:
    from layerprobe.store import open_store

    first, second = order
    a = _demo(tmp_path, first)
    b = _demo(tmp_path, second)  # failed before: the store was made for another dataset
    for result, n in ((a, first), (b, second)):
        [store] = result.stores
        assert open_store(store).n_samples == 3 * n and open_store(store).committed.all()
        assert result.results.is_file() and "P_final" in result.profile_markdown
    built = {p: _mtimes(p) for p in (*a.stores, *b.stores)}
    again = _demo(tmp_path, first)  # the plain rerun: reuses what is built
    assert again.stores == a.stores and again.results == a.results
    assert {p: _mtimes(p) for p in built} == built  # no store rewritten
    assert np.array_equal(open_store(a.stores[0]).labels, open_store(again.stores[0]).labels)


def test_the_fine_tuning_arm_runs_once_and_feeds_the_report(tmp_path: Path) -> None:
    """Issue 12 #6: base and fine-tuned runs, the vision-CE row, the overlay and Tables 2 and 3; a rerun trains nothing."""
    import polars as pl

    from layerprobe.store import open_store

    cfg = DemoConfig(out=tmp_path, families=("llava",), n_per_class=10, image_size=32, seeds=(0,), device="cpu", progress=False,
                     finetune_n_per_class=10, finetune_epochs=1)
    first = run_demo(cfg, log=lambda _: None)
    arm = first.arm
    assert arm is not None and all(a.is_dir() for a in arm.adapters) and arm.vision_ce.is_file()
    towers = [open_store(s).meta.extra.get("finetune", {}).get("vision_tower") for s in arm.stores]
    assert towers == [None, "frozen", "lora"]
    text = (first.report / "report.md").read_text()
    assert "(Table 2)" in text and "(Table 3)" in text
    assert pl.read_csv(first.report / "table3.csv").height == 1
    svg = next((first.report / "figures").glob("pipeline_synthetic-easy*.svg")).read_text()
    assert "base model" in svg and svg.count("+ qwen2_vl") == 2  # the overlay pairs both adapters with their base
    built = {p: _mtimes(p) for p in (*arm.adapters, *arm.stores)}
    ce_mtime, results_mtime = arm.vision_ce.stat().st_mtime_ns, arm.results.stat().st_mtime_ns
    again = run_demo(cfg, log=lambda _: None)
    assert again.arm == arm
    assert {p: _mtimes(p) for p in built} == built  # no adapter retrained, no store rewritten
    assert arm.vision_ce.stat().st_mtime_ns == ce_mtime and arm.results.stat().st_mtime_ns == results_mtime
