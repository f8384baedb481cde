"""`layerprobe study` on the local engine: plan, skip, rerun what changed, record failures, refuse bad input.

The tiny study is ``examples/tiny-study.toml`` itself, copied into a temporary folder with its inputs
(two tiny checkpoints and a synthetic dataset) built next to it at the relative paths it names.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import polars as pl
import pytest

from layerprobe import vocab
from layerprobe.study import StudyError, load_study, plan_study, run_study

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny-study.toml"
TINY = {"hidden": 64, "n_layers": 2, "vision_layers": 2, "image_size": 56}
"""The sizes the example's model folder names encode (conftest's TINY_TEST_SIZE)."""


def build_tiny_study(folder: Path) -> Path:
    """Copy the tiny example into ``folder`` and build the models and images it names; return the copy."""
    from layerprobe.testing import build_tiny, make_dataset

    study = folder / EXAMPLE.name
    shutil.copy(EXAMPLE, study)
    for family in ("llava", "qwen2_vl"):
        build_tiny(family, folder / "tiny-study" / "models", **TINY)
    make_dataset(folder / "tiny-study" / "data" / "synthetic-ultrasound", n_per_class=16, size=56)
    return study


def variant(study: Path, name: str, *, out: str, replace: dict[str, str] | None = None) -> Path:
    """A copy of ``study`` beside it writing to ``out``, with text replacements."""
    text = study.read_text().replace('out = "tiny-study/out"', f'out = "{out}"')
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = study.with_name(name)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory) -> Path:
    return build_tiny_study(tmp_path_factory.mktemp("study"))


STEPS = 14
"""2 models x (base: extract, probe; sft-lora: finetune, extract, probe; vision-ce: finetune) + fhs + report."""


def test_the_example_plans_every_arm(tiny_study):
    plan = plan_study(load_study(tiny_study))
    kinds = [s.kind for s in plan.steps]
    assert len(kinds) == STEPS and kinds.count(vocab.STEP_FINETUNE) == 4
    assert kinds.count(vocab.STEP_EXTRACT) == 4 and kinds.count(vocab.STEP_PROBE) == 4
    assert kinds[-2:] == [vocab.STEP_FHS, vocab.STEP_REPORT]
    assert len({s.out for s in plan.steps}) == len(plan.steps)
    steps = plan.by_id()
    sft = steps["extract/tiny-llava/synthetic/sft-lora"]
    assert sft.deps == ("finetune/tiny-llava/synthetic/sft-lora",) and sft.adapter == steps[sft.deps[0]].out
    ce = steps["finetune/tiny-llava/synthetic/vision-ce"]
    assert ce.out.suffix == ".parquet" and "extract/tiny-llava/synthetic/vision-ce" not in steps  # its row is its output
    fhs = steps["fhs/synthetic"]
    assert ce.id in fhs.deps and ce.out in fhs.tables and len(fhs.tables) == 6


def test_run_rerun_and_a_changed_probe_setting(tiny_study):
    study = variant(tiny_study, "rerun.toml", out="rerun-out")
    lines: list[str] = []
    first = run_study(study, echo=lines.append)
    assert set(first.states.values()) == {vocab.STATE_DONE}, first.states
    assert len(first.ran) == STEPS and any("done     extract/" in line for line in lines)
    status = json.loads(first.status.read_text())
    assert status["counts"][vocab.STATE_DONE] == STEPS
    report = next(s for s in first.plan.steps if s.kind == vocab.STEP_REPORT)
    assert (report.out / "report.md").is_file() and json.loads((report.out / "missing.json").read_text()) == {"missing": []}
    table3 = pl.read_csv(report.out / "table3.csv")  # the paper's Table 3, each row from one arm of the study
    assert table3.height == 2 and table3.null_count().sum_horizontal().item() == 0, table3  # a row per model

    again = run_study(study, echo=None)
    assert again.ran == ()  # every step skipped, no engine started

    changed = variant(tiny_study, "rerun.toml", out="rerun-out", replace={"seeds = [0]": "seeds = [1]"})
    third = run_study(changed, echo=None)
    assert sorted({i.split("/")[0] for i in third.ran}) == sorted([vocab.STEP_PROBE, vocab.STEP_FHS, vocab.STEP_REPORT])
    assert len(third.ran) == 6  # 4 probe steps, fhs and report: no fine-tuning, no extraction
    dry: list[str] = []
    run_study(changed, dry_run=True, echo=dry.append)
    assert f"{STEPS} done, 0 pending" in dry[0]


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_study):
    study = variant(tiny_study, "dry.toml", out="dry-out")
    lines: list[str] = []
    result = run_study(study, dry_run=True, echo=lines.append)
    assert set(result.states.values()) == {vocab.STATE_PENDING}
    assert f"{STEPS} pending" in lines[0] and "to write under" in lines[0]
    assert sum(" pending  extract " in line for line in lines) == 4
    assert not (tiny_study.parent / "dry-out" / "status.json").exists()


def test_a_failed_step_is_recorded_and_the_others_go_on(tiny_study):
    broken = tiny_study.parent / "tiny-study" / "models" / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "config.json").write_text("{not json")
    study = variant(tiny_study, "broken.toml", out="broken-out", replace={
        'name = "tiny-qwen2vl"': 'name = "tiny-qwen2vl"\n\n[[models]]\nsource = "tiny-study/models/broken"',
    })  # fmt: skip
    result = run_study(study, echo=None)
    states = result.states
    assert states["extract/broken/synthetic/base"] == vocab.STATE_FAILED
    assert states["probe/broken/synthetic/base"] == vocab.STATE_BLOCKED
    assert states["finetune/broken/synthetic/sft-lora"] == vocab.STATE_FAILED and states["extract/broken/synthetic/sft-lora"] == vocab.STATE_BLOCKED
    assert states["finetune/broken/synthetic/vision-ce"] == vocab.STATE_FAILED
    assert states["probe/tiny-llava/synthetic/base"] == vocab.STATE_DONE and states["report/tiny"] == vocab.STATE_DONE
    rows = json.loads(result.status.read_text())["steps"]
    error = rows["extract/broken/synthetic/base"]["error"]
    assert error and "\n" not in error
    report = next(s for s in result.plan.steps if s.kind == vocab.STEP_REPORT)
    missing = json.loads((report.out / "missing.json").read_text())["missing"]
    assert len(missing) == 3 and all("broken" in m for m in missing)  # the tables of its three arms
    assert "Missing from this study" in (report.out / "report.md").read_text()
    # the report is redone once its input exists; the rest stays done
    again = run_study(study, echo=None)
    assert "extract/tiny-llava/synthetic/base" not in again.ran and "report/tiny" in again.ran


def _refused(study: Path, **kwargs) -> str:
    with pytest.raises(StudyError) as err:
        run_study(study, echo=None, **kwargs)
    message = str(err.value)
    assert "\n" not in message
    out = study.parent / "bad-out"
    assert not (out / "status.json").exists() and not (out / "stores").exists()  # before any step: nothing run
    return message


def test_an_unknown_key_is_refused_with_its_name_and_file(tiny_study):
    study = variant(tiny_study, "unknown.toml", out="bad-out", replace={"[probe]\n": "[probe]\ncolour = 'red'\n"})
    message = _refused(study)
    assert "'colour'" in message and "[probe]" in message and str(study) in message


def test_a_model_neither_in_the_registry_nor_a_folder_is_refused(tiny_study):
    study = variant(tiny_study, "nomodel.toml", out="bad-out", replace={"tiny-study/models/llava-h64": "no/such-model-h64"})
    assert "neither a model of the registry" in _refused(study)


def test_two_arms_writing_the_same_output_are_refused(tiny_study):
    study = variant(tiny_study, "twins.toml", out="bad-out", replace={'  "base",\n': '  "base",\n  { kind = "base", name = "again" },\n'})
    message = _refused(study)
    assert "would write the same output" in message and "again" in message


@pytest.mark.parametrize(("settings", "said"), [
    ("max_stepz = 2", "'max_stepz' is not a setting of FinetuneConfig"),
    ("max_steps = 0", "max_steps must be at least 1"),
    ("learning_rate = '1e-3'", "wrong type"),
    ("device = 'cuda'", "'device' is not a setting"),  # set by the study ([extract] device)
])
def test_bad_arm_settings_are_refused_before_any_step(tiny_study, settings, said):
    study = variant(tiny_study, "arm.toml", out="bad-out", replace={"settings = { max_steps = 2, learning_rate = 1e-3 }": f"settings = {{ {settings} }}"})
    message = _refused(study)
    assert said in message and "sft-lora" in message


def test_a_probe_split_other_than_the_trainers_is_refused(tiny_study):
    study = variant(tiny_study, "split.toml", out="bad-out", replace={"seeds = [0]": "seeds = [0]\nsplit_seed = 3"})
    assert "the split the fine-tuning arms train on" in _refused(study)
    base_only = variant(study, "split-base.toml", out="bad-out", replace={'  { kind = "sft-lora"': '#', '  { kind = "vision-ce"': '#'})
    assert [a.kind for a in load_study(base_only).arms] == [vocab.ARM_BASE]  # a base-only study may split as it likes


def test_a_dataset_limit_applies_to_the_trainers_too(tiny_study):
    """The trainers split exactly the samples the extraction keeps (else a test image could be a training one)."""
    study = variant(tiny_study, "limit.toml", out="limit-out", replace={'name = "synthetic"': 'name = "synthetic"\nlimit = 30'})
    steps = plan_study(load_study(study)).by_id()
    extracted = steps["extract/tiny-llava/synthetic/sft-lora"].config()
    from layerprobe.extract.data.datasets import resolve_dataset

    kept = resolve_dataset(extracted.dataset, split_file=extracted.split_file).head(extracted.limit)
    for arm in ("sft-lora", "vision-ce"):
        trained = steps[f"finetune/tiny-llava/synthetic/{arm}"].config()
        assert trained.dataset.n_samples == 30 and trained.dataset.sha256 == kept.sha256


def test_engine_ray_without_ray_installed_says_how_to_install(tiny_study, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.delitem(sys.modules, "layerprobe.study.engines.ray_engine", raising=False)
    study = variant(tiny_study, "noray.toml", out="bad-out")
    assert "pip install 'layerprobe[ray]'" in _refused(study, engine=vocab.ENGINE_RAY)


def test_an_unreachable_ray_address_is_refused_before_any_step(tiny_study):
    pytest.importorskip("ray")
    study = variant(tiny_study, "noaddr.toml", out="bad-out")
    assert "cannot reach the Ray cluster" in _refused(study, engine=vocab.ENGINE_RAY, address="127.0.0.1:1")


def test_cli_study_help_and_dry_run(tiny_study, capsys):
    from layerprobe.cli import main

    main(["study", "--help"])  # click's standalone mode is off: --help returns
    assert "layerprobe study examples/tiny-study.toml" in capsys.readouterr().out
    main(["study", str(variant(tiny_study, "cli.toml", out="cli-out")), "--dry-run"])
    assert "pending" in capsys.readouterr().err


def test_planning_imports_no_torch(tiny_study):
    """A Ray driver only plans and merges: reading and planning the study leaves torch unimported
    (about a second of a fresh command), and each probe part makes its config, device included,
    on the worker that runs it."""
    import subprocess

    code = ("import sys; from layerprobe.study import load_study, plan_study; "
            "plan = plan_study(load_study(sys.argv[1])); print(len(plan.steps), 'torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code, str(tiny_study)], capture_output=True, text=True, check=True).stdout
    assert out.split()[-1] == "False", out


def test_probe_parts_merge_into_the_single_sweep_table(tiny_study):
    """The Ray engine's split of a probe sweep (site x layer runs), run here, equals one sweep."""
    study = variant(tiny_study, "parts.toml", out="parts-out")
    result = run_study(study, echo=None)
    probe = next(s for s in result.plan.steps if s.kind == vocab.STEP_PROBE)
    parts = probe.parts(3)
    assert len(parts) > 3
    from dataclasses import replace

    from layerprobe.probe.sweep import run_sweep

    merged = replace(probe, out=probe.out.with_name("merged.parquet"))
    merged.merge([run_sweep(probe.config(**changes)) for changes in parts])
    key = list(vocab.PROBE_KEY)
    a, b = (pl.read_parquet(p).drop("train_seconds").sort(key) for p in (probe.out, merged.out))
    assert a.equals(b)


def test_an_interrupted_extraction_resumes_its_store_to_the_same_bytes(tiny_study):
    from test_store_bytes_golden import store_digest

    from layerprobe.store import open_store

    reference = run_study(variant(tiny_study, "whole.toml", out="whole-out"), echo=None)
    study = variant(tiny_study, "resume.toml", out="resume-out")
    extract = next(s for s in plan_study(load_study(study)).steps if s.kind == vocab.STEP_EXTRACT)
    extract.run_shard(0, 2)  # half the blocks, as a run stopped part-way leaves them
    committed = open_store(extract.out).committed
    assert committed.any() and not committed.all()
    result = run_study(study, echo=None)
    assert set(result.states.values()) == {vocab.STATE_DONE}
    whole = next(s for s in reference.plan.steps if s.id == extract.id)
    assert store_digest(extract.out) == store_digest(whole.out)
