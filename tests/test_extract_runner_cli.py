"""`layerprobe extract` on the command line: help, a run with --json, the generic adapter flags, errors."""

from __future__ import annotations

import json

import click
import numpy as np
import pytest

from layerprobe.cli import main
from layerprobe.cli.extract_cmd import extract
from layerprobe.store import open_store
from test_extract_runner import make_images


@pytest.fixture(scope="module")
def setup(tiny_checkpoint, tmp_path_factory):
    return tiny_checkpoint("llava"), make_images(tmp_path_factory.mktemp("cli") / "pets", n_per_class=3)


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_help_documents_every_option_with_an_example(capsys) -> None:
    code, out, _ = _run(["extract", "--help"], capsys)
    assert code == 0
    options = [p for p in extract.params if isinstance(p, click.Option) and p.name != "help"]
    required = ("--model --revision --adapter --trust-remote-code --site-spec --vision-layers --connector --llm-layers "
                "--dataset --split-file --prompt --instruction --candidates --out --batch-size --workers --threads --prefetch --dtype --device --shard "
                "--limit --skip-bad --dicom-frame --allow-duplicate-images --chunk-samples --json --no-progress --allow-pickle --force-adapter --answer-tokens").split()
    assert sorted(required) == sorted(o for option in options for o in option.opts)
    for option in options:
        assert option.opts[0] in out, option.opts[0]
        assert "e.g." in (option.help or ""), f"{option.opts[0]} has no example"


def test_cli_run_prints_a_json_summary(setup, tmp_path, capsys) -> None:
    model, images = setup
    out = tmp_path / "run.zarr"
    args = ["extract", "--model", str(model), "--dataset", str(images), "--out", str(out), "--batch-size", "2",
            "--workers", "0", "--limit", "5", "--candidates", "cat, dog", "--json", "--no-progress"]
    code, stdout, err = _run(args, capsys)
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["store"] == str(out) and summary["n_samples"] == 5 and summary["complete"] and summary["n_skipped"] == 0
    store = open_store(out)
    assert store.meta.candidates == ("cat", "dog")
    assert "Answer with one of: 'cat', 'dog'" in store.meta.prompt_template  # the generic default instruction


def test_generic_adapter_flags_capture_the_same_llm_sites(setup, tmp_path, capsys) -> None:
    model, images = setup
    common = ["--model", str(model), "--dataset", str(images), "--workers", "0", "--json", "--no-progress", "--limit", "3"]
    flags = ["--vision-layers", "model.vision_tower.encoder.layers", "--connector", "model.multi_modal_projector",
             "--llm-layers", "model.language_model.layers"]
    assert _run(["extract", *common, "--out", str(tmp_path / "builtin.zarr")], capsys)[0] == 0
    code, _, err = _run(["extract", *common, *flags, "--out", str(tmp_path / "generic.zarr")], capsys)
    assert code == 0, err
    builtin, generic = open_store(tmp_path / "builtin.zarr"), open_store(tmp_path / "generic.zarr")
    for site in ("llm/final_token", "llm/image_mean"):
        layers = list(range(len(builtin.sites[site].layer_names)))
        assert np.array_equal(builtin.read_slabs(site, layers).numpy(), generic.read_slabs(site, layers).numpy()), site


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--shard", "2/2"], 2, "needs 0 <= k < n"),
        (["--shard", "1-2"], 2, "is not k/n"),
        (["--vision-layers", "a.b"], 2, "missing --connector, --llm-layers"),
        (["--site-spec", "s.toml", "--connector", "a", "--vision-layers", "b", "--llm-layers", "c"], 2, "not both"),
        (["--candidates", "[1, 2]"], 2, "list of strings"),
        (["--dataset", "/nonexistent/folder"], 1, "error: dataset '/nonexistent/folder' does not exist"),
    ],
)
def test_cli_errors_are_one_line(setup, tmp_path, capsys, extra, code, message) -> None:
    model, images = setup
    args = ["extract", "--model", str(model), "--dataset", str(images), "--out", str(tmp_path / "x.zarr"), "--no-progress", *extra]
    got, _, err = _run(args, capsys)
    assert got == code and message in err, err
    if code == 1:
        assert len(err.strip().splitlines()) == 1


def test_threads_run_the_forward_on_that_many_and_are_restored(setup, tmp_path, capsys, monkeypatch) -> None:
    import torch

    from layerprobe.extract.capture import Capturer

    model, images = setup
    seen: list[int] = []
    real = Capturer.run
    monkeypatch.setattr(Capturer, "run", lambda self, inputs, **kw: seen.append(torch.get_num_threads()) or real(self, inputs, **kw))
    before = torch.get_num_threads()
    out = tmp_path / "t.zarr"
    code, _, err = _run(["extract", "--model", str(model), "--dataset", str(images), "--out", str(out), "--workers", "0",
                         "--no-progress", "--answer-tokens", "0", "--threads", "1", "--dtype", "float32"], capsys)
    assert code == 0, err
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before
    assert open_store(out).meta.extra["threads"] == 1
    code, _, err = _run(["extract", "--model", str(model), "--dataset", str(images), "--out", str(tmp_path / "u.zarr"), "--threads", "0"], capsys)
    assert code == 2 and "--threads" in err
