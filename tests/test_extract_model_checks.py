"""Issue 15, model side: adapters for another model (6), damaged or pickled files (13), clear messages (14)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from layerprobe.errors import ExtractError
from layerprobe.extract.model.loading import _one_line, load_model


def _lora(model_path: Path, out: Path, targets=("q_proj", "v_proj")) -> Path:
    from peft import LoraConfig, get_peft_model

    if not out.exists():
        config = LoraConfig(r=4, lora_alpha=16, target_modules=list(targets), init_lora_weights=False)
        get_peft_model(load_model(model_path, progress=False).model, config).save_pretrained(out)
    return out


def _one_line_error(call, *needles: str) -> str:
    with pytest.raises(ExtractError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


@pytest.fixture(scope="module")
def models(tiny_checkpoint, tmp_path_factory):
    """Two tiny families and an adapter trained on each."""
    root = tmp_path_factory.mktemp("adapters")
    llava, gemma = tiny_checkpoint("llava"), tiny_checkpoint("gemma3")
    return {"llava": llava, "gemma3": gemma, "lora_llava": _lora(llava, root / "lora-llava"),
            "lora_gemma3": _lora(gemma, root / "lora-gemma3"), "root": root}


# -- 6: an adapter trained for another model ---------------------------------------------------


@pytest.mark.parametrize(("model", "adapter", "trained", "is_now"), [
    ("llava", "lora_gemma3", "Gemma3ForConditionalGeneration", "LlavaForConditionalGeneration"),
    ("gemma3", "lora_llava", "LlavaForConditionalGeneration", "Gemma3ForConditionalGeneration"),
])
def test_an_adapter_of_another_family_is_refused_unless_forced(models, model, adapter, trained, is_now):
    message = _one_line_error(lambda: load_model(models[model], adapter=models[adapter], progress=False),
                              f"was trained on a {trained}", f"is a {is_now}", "--force-adapter")
    assert str(models[adapter]) in message
    forced = load_model(models[model], adapter=models[adapter], force_adapter=True, progress=False)
    assert forced.adapter_hash is not None
    assert load_model(models[model], adapter=models[f"lora_{model}"], progress=False).adapter_hash is not None  # its own fits


def _copy_adapter(models, name: str, **config_change) -> Path:
    out = shutil.copytree(models["lora_llava"], models["root"] / name)
    config = json.loads((out / "adapter_config.json").read_text())
    config.update(config_change)
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


def test_the_base_model_path_and_the_finetune_hash_are_compared(models, tiny_checkpoint):
    # no class on record: the base folder's model_type decides
    other_base = _copy_adapter(models, "base-gemma", auto_mapping=None, base_model_name_or_path=str(models["gemma3"]))
    _one_line_error(lambda: load_model(models["llava"], adapter=other_base, progress=False), "model_type 'gemma3'", "model_type 'llava'")
    # layerprobe finetune's metadata: the base model hash decides (another llava, same class and shapes)
    llava = load_model(models["llava"], progress=False)
    tuned = _copy_adapter(models, "tuned")
    metadata = {"format": "layerprobe-finetune", "base_model_id": "org/other", "base_model_hash": "0" * 64, "model_type": "llava"}
    (tuned / "layerprobe-finetune.json").write_text(json.dumps(metadata))
    _one_line_error(lambda: load_model(models["llava"], adapter=tuned, progress=False), "fine-tuned from org/other", "hash 000000000000")
    (tuned / "layerprobe-finetune.json").write_text(json.dumps({**metadata, "base_model_hash": llava.model_hash}))
    assert load_model(models["llava"], adapter=tuned, progress=False).adapter_hash is not None
    other_seed = tiny_checkpoint("llava", seed=1)
    _one_line_error(lambda: load_model(other_seed, adapter=tuned, progress=False), "fine-tuned from org/other")
    assert load_model(other_seed, adapter=tuned, force_adapter=True, progress=False).adapter_hash is not None


def test_target_modules_and_lora_shapes_must_fit_the_model(models, tiny_checkpoint):
    missing = _copy_adapter(models, "targets", target_modules=["q_proj", "wqkv"])
    _one_line_error(lambda: load_model(models["llava"], adapter=missing, progress=False), "targets module 'wqkv'")
    regex = _copy_adapter(models, "regex", target_modules=r"model\.nowhere\..*")
    _one_line_error(lambda: load_model(models["llava"], adapter=regex, progress=False), "targets modules matching")
    wider = tiny_checkpoint("llava", hidden=96)  # same class, same module names, other widths
    _one_line_error(lambda: load_model(wider, adapter=models["lora_llava"], progress=False), "does not fit", "expected 96")


def test_extract_refuses_the_adapter_on_the_command_line(models, tmp_path, capsys):
    from layerprobe.cli import main
    from test_extract_runner import make_images

    images = make_images(tmp_path / "pets", n_per_class=2)
    args = ["extract", "--model", str(models["llava"]), "--adapter", str(models["lora_gemma3"]), "--dataset", str(images),
            "--out", str(tmp_path / "x.zarr"), "--workers", "0", "--no-progress", "--json"]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and len(err.strip().splitlines()) == 1 and "--force-adapter" in err
    main(args + ["--force-adapter"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["complete"]


# -- 13: truncated and pickled files -------------------------------------------------------------


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_weights_and_adapters_are_one_line_errors_naming_the_file(models, tmp_path):
    model = shutil.copytree(models["llava"], tmp_path / "model")
    _truncate(model / "model.safetensors")
    _one_line_error(lambda: load_model(model), "model.safetensors is truncated", "interrupted download")
    (model / "model.safetensors").write_bytes(b"\x01\x00")
    _one_line_error(lambda: load_model(model), "model.safetensors is truncated or not a safetensors file")
    adapter = shutil.copytree(models["lora_llava"], tmp_path / "lora")
    _truncate(adapter / "adapter_model.safetensors", 0.9)
    _one_line_error(lambda: load_model(models["llava"], adapter=adapter, progress=False), "adapter_model.safetensors is truncated")


def _pickle_adapter(models, out: Path) -> Path:
    from safetensors.torch import load_file

    shutil.copytree(models["lora_llava"], out)
    torch.save(load_file(out / "adapter_model.safetensors"), out / "adapter_model.bin")
    (out / "adapter_model.safetensors").unlink()
    return out


def test_pickled_files_are_refused_unless_allowed(models, tmp_path, tiny_images):
    adapter = _pickle_adapter(models, tmp_path / "pickled-lora")
    _one_line_error(lambda: load_model(models["llava"], adapter=adapter, progress=False), "adapter_model.bin", "--allow-pickle")
    pickled = load_model(models["llava"], adapter=adapter, allow_pickle=True, dtype="float32", progress=False)
    safe = load_model(models["llava"], adapter=models["lora_llava"], dtype="float32", progress=False)
    for (name, a), (_, b) in zip(pickled.model.named_parameters(), safe.model.named_parameters()):
        assert torch.equal(a, b), name
    model = tmp_path / "pickled-model"
    shutil.copytree(models["llava"], model)
    net = load_model(model, dtype="float32", progress=False).model
    torch.save(net.state_dict(), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    _one_line_error(lambda: load_model(model), "pytorch_model.bin", "can run code", "--allow-pickle")
    assert len(load_model(model, allow_pickle=True, progress=False).model_hash) == 64


# -- 14: clear one-line messages -----------------------------------------------------------------


def test_an_unknown_model_type_is_one_clean_line(models, tmp_path):
    model = shutil.copytree(models["llava"], tmp_path / "future")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "llava_from_the_future"}))
    message = _one_line_error(lambda: load_model(model), "model_type 'llava_from_the_future'", "upgrade transformers")
    assert "your version )" not in message and message.endswith("ships its own code")


def test_long_messages_are_cut_at_a_sentence_or_word_end():
    text = "The checkpoint has model type `x` but Transformers does not recognize this architecture. " + "word " * 60
    assert _one_line(ValueError(text)) == text.split(". ")[0] + "."
    cut = _one_line(ValueError("a" * 5 + " bcdefgh" * 40))
    assert cut.endswith(" ...") and len(cut) <= 204 and "bcdefgh ..." in cut


@pytest.mark.parametrize("typed", ["./no-such-ckpt", "../no-such/models/x", "/no/such/ckpt", "~/no-such-ckpt-xyz", "subdir/missing"])
def test_a_mistyped_local_folder_is_said_to_be_missing_not_fetched(typed, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.chdir(tmp_path)
    (tmp_path / "subdir").mkdir()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("a path was sent to the hub"))
    _one_line_error(lambda: load_model(typed), f"model folder {typed!r} does not exist")


def test_no_progress_hides_the_loading_bars(models, capfd):
    load_model(models["llava"], progress=False)
    assert "Loading weights" not in capfd.readouterr().err
    load_model(models["llava"])
    assert "Loading weights" in capfd.readouterr().err  # shown by default: the check above can fail


def test_extract_has_the_allow_pickle_flag_the_message_names(models, tmp_path, capsys):
    from layerprobe.cli import main
    from test_extract_runner import make_images

    model = tmp_path / "pickled"
    shutil.copytree(models["llava"], model)
    torch.save(load_model(model, dtype="float32", progress=False).model.state_dict(), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
    images = make_images(tmp_path / "pets", n_per_class=2)
    args = ["extract", "--model", str(model), "--dataset", str(images), "--out", str(tmp_path / "p.zarr"), "--workers", "0",
            "--no-progress", "--json"]
    with pytest.raises(SystemExit):
        main(args)
    assert "--allow-pickle" in capsys.readouterr().err
    main(args + ["--allow-pickle"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["complete"]
