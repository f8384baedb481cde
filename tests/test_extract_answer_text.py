"""Extraction with generated answers (``ExtractConfig.answer_tokens``): the text of each sample's greedy
continuation is stored with its block, and is what the model generates for that batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from layerprobe.errors import ExtractError, StoreError
from layerprobe.extract.config import ExtractConfig
from layerprobe.extract.runner import answer_decoder, batch_ranges, run_extract
from layerprobe.store import open_store, verify
from test_extract_runner import CLASSES, config, make_images


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("answer-images") / "pets", n_per_class=3)


@pytest.fixture(scope="module")
def llava(tiny_checkpoint) -> Path:
    return tiny_checkpoint("llava")


def test_default_is_eight_tokens_and_zero_means_forced_choice_only(llava, images, tmp_path) -> None:
    assert ExtractConfig(model="m", dataset="d", out=tmp_path / "x").answer_tokens == 8
    for bad in (-1, True, 2.0):
        with pytest.raises(ExtractError, match="answer_tokens"):
            ExtractConfig(model="m", dataset="d", out=tmp_path / "x", answer_tokens=bad)
    store = open_store(run_extract(config(llava, images, tmp_path / "forced.zarr", answer_tokens=0)))
    assert store.meta.answer_tokens == 0 and not store.has_answer_text


def test_stored_answers_are_the_batches_generations(llava, images, tmp_path) -> None:
    from layerprobe.extract.capture import Capturer
    from layerprobe.extract.data.datasets import from_image_folder
    from layerprobe.extract.data.images import read_image
    from layerprobe.extract.model.adapters import get_adapter
    from layerprobe.extract.model.loading import load_model
    from layerprobe.extract.model.prompt import candidate_token_ids, encode_batch, render_prompt

    path = run_extract(config(llava, images, tmp_path / "gen.zarr", answer_tokens=4, dtype="float32"))
    store = open_store(path)
    assert store.meta.answer_tokens == 4 and verify(path, progress=False).ok
    texts = store.answer_text()
    loaded = load_model(llava, dtype="float32")
    capturer = Capturer(loaded, get_adapter(loaded), candidate_token_ids(loaded.processor, CLASSES))
    prompt = render_prompt(loaded.processor, "What animal is this?")
    paths = from_image_folder(images).paths
    decode = answer_decoder(loaded.processor)
    expected: list[str] = []
    for start, stop in batch_ranges([(s, min(s + 4, len(paths))) for s in range(0, len(paths), 4)], 3):
        inputs = encode_batch(loaded.processor, [read_image(p).image for p in paths[start:stop]], prompt=prompt)
        result = capturer.run(inputs, max_new_tokens=4)
        assert result.generated_ids.shape[1] <= 4
        expected += decode(result.generated_ids)
    assert texts == tuple(expected)
    assert all(isinstance(t, str) and t == t.strip() for t in texts)
    assert any(texts), "the tiny model generated only special tokens; the test would prove nothing"


def test_generation_leaves_the_captured_states_alone(llava, images, tmp_path) -> None:
    """The states are taken at the prompt's final token whether or not the pass goes on to decode."""
    forced = open_store(run_extract(config(llava, images, tmp_path / "f.zarr", answer_tokens=0, dtype="float32")))
    gen = open_store(run_extract(config(llava, images, tmp_path / "g.zarr", answer_tokens=3, dtype="float32")))
    for site in forced.sites:
        torch.testing.assert_close(gen.read_slabs(site), forced.read_slabs(site), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(gen.answer_logits_numpy(), forced.answer_logits_numpy(), rtol=1e-3, atol=1e-3)


def test_resume_with_other_answer_tokens_is_refused_before_loading(llava, images, tmp_path) -> None:
    run_extract(config(llava, images, tmp_path / "s.zarr", answer_tokens=2, limit=4))
    with pytest.raises(StoreError, match="answer_tokens"):
        run_extract(config(llava, images, tmp_path / "s.zarr", answer_tokens=0, limit=4))


def test_cli_flag(llava, images, tmp_path, capsys) -> None:
    from layerprobe.cli import main

    out = tmp_path / "cli.zarr"
    main(["extract", "--model", str(llava), "--dataset", str(images), "--out", str(out), "--batch-size", "3",
          "--workers", "0", "--no-progress", "--dtype", "bfloat16", "--answer-tokens", "2", "--limit", "3"])
    assert open_store(out).meta.answer_tokens == 2
