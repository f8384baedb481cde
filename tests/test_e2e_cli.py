"""The CLI chain a user runs: extract -> info/verify -> probe -> fhs -> report, on a tiny fixture.

Asserts on the files and numbers produced, not only on exit codes.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from layerprobe.cli import _register, cli
from layerprobe.testing.images import CANDIDATES, INSTRUCTION, make_dataset


def _run(args: list[str]):
    _register()
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, f"layerprobe {' '.join(args)} failed:\n{res.output}"
    return res


@pytest.mark.slow
def test_cli_chain(tmp_path: Path, tiny_checkpoint) -> None:
    model = tiny_checkpoint("llava")
    data = make_dataset(tmp_path / "us", n_per_class=12, size=56)
    store = tmp_path / "run.zarr"
    _run(["extract", "--model", str(model), "--dataset", str(data), "--out", str(store),
          "--instruction", INSTRUCTION, "--candidates", ",".join(CANDIDATES), "--batch-size", "6",
          "--workers", "0", "--no-progress"])

    info = json.loads(_run(["info", str(store), "--json"]).output)
    assert info["n_samples"] == 36
    assert json.loads(_run(["verify", str(store), "--json"]).output)["ok"] is True

    results = tmp_path / "results.parquet"
    _run(["probe", str(store), "--out", str(results), "--preset", "fast", "--kinds", "mlp,linear", "--no-progress"])
    table = pl.read_parquet(results)
    probes = table.filter(pl.col("kind") != "model")
    # every site x layer x kind of the store, plus the model's own answer row
    n_slabs = sum(len(s["layer_names"]) for s in info["sites"].values()) if isinstance(info["sites"], dict) else None
    if n_slabs is not None:
        assert probes.height == 2 * n_slabs
    # two model rows: the forced choice and the generated answer (extract generates by default)
    assert sorted(table.filter(pl.col("kind") == "model")["site"]) == ["answer_logits", "answer_text"]
    assert (probes["status"] == "ok").all()
    acc = probes["test_accuracy"].to_numpy()
    assert ((acc >= 0) & (acc <= 1)).all()

    fhs = json.loads(_run(["fhs", str(results), "--json"]).output)
    row = fhs[0] if isinstance(fhs, list) else fhs["runs"][0]
    p_final = table.filter((pl.col("kind") == "model") & (pl.col("site") == "answer_text"))["test_accuracy"][0] * 100  # auto: generated
    assert abs(row["p_final"] - p_final) < 1e-6

    out = tmp_path / "report"
    res = _run(["report", str(results), "--out", str(out)])
    assert str(out) in res.output
    text = (out / "report.md").read_text()
    assert "Four-score profile" in text
    assert "P_final: generated answer" in text
    pngs = list((out / "figures").glob("*.png"))
    assert pngs and all(p.stat().st_size > 10_000 for p in pngs)


def test_errors_are_one_line(tmp_path: Path) -> None:
    from layerprobe.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["info", str(tmp_path / "missing.zarr")])
    assert exc.value.code == 1
    with pytest.raises(SystemExit) as exc:
        main(["extract", "--no-such-flag"])
    assert exc.value.code == 2
