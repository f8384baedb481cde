"""Loading like a user's checkpoint: tiny builds, processors, hashes, LoRA adapters, prompts, errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from layerprobe.errors import ExtractError
from layerprobe.extract import Capturer, candidate_token_ids, encode_batch, get_adapter, load_model, render_prompt
from layerprobe.testing import build_tiny, tiny_families


def _manual_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("family", tiny_families())
def test_tiny_checkpoint_loads_like_a_user_checkpoint(family, tiny_checkpoint):
    path = tiny_checkpoint(family)
    config = json.loads((path / "config.json").read_text())
    # a plain transformers checkpoint: safetensors weights, the stock processor class on record
    assert (path / "model.safetensors").is_file() and not list(path.glob("*.bin"))
    processor_class = json.loads((path / "processor_config.json").read_text()).get("processor_class", "")
    assert "ImageOnly" not in processor_class
    lm = load_model(path, dtype="float32")
    assert lm.model_type == config["model_type"]
    assert lm.model_hash == _manual_hash(path)
    assert lm.model.dtype == torch.float32 and not lm.model.training
    assert lm.adapter is None and lm.adapter_hash is None and lm.compute_dtype == "float32"
    tokenizer = lm.processor.tokenizer
    assert tokenizer.padding_side == "left"
    assert lm.model.get_output_embeddings().weight.shape[0] >= len(tokenizer)  # vocab covers every token
    image_token = getattr(tokenizer, "image_token", None)
    assert image_token in tokenizer.all_special_tokens  # a named special token
    assert tokenizer.convert_tokens_to_ids(image_token) == get_adapter(lm).image_token_id(lm.model.config)
    # rotary buffers built in the load dtype (construction dtype), not cast afterwards
    lm16 = load_model(path)
    assert lm16.model.dtype == torch.bfloat16 and lm16.model_hash == lm.model_hash


def test_tiny_family_gotchas(tiny_checkpoint, tiny_images):
    gemma = load_model(tiny_checkpoint("gemma3"), dtype="float32")
    assert gemma.model.model.multi_modal_projector.mm_input_projection_weight.abs().sum() > 0
    pali = load_model(tiny_checkpoint("paligemma"), dtype="float32")
    assert len(pali.processor.tokenizer) > 1152 + 2000 - 1  # the <loc>/<seg> tokens are in the vocabulary
    batch = encode_batch(pali.processor, tiny_images[:1], render_prompt(pali.processor, "q", plain_prompt="{image}{instruction}"))
    assert "labels" not in batch and "token_type_ids" in batch
    smol = load_model(tiny_checkpoint("smolvlm"), dtype="float32")
    assert smol.processor.image_seq_len == 4  # explicit __init__ argument survives the reload


def test_build_tiny_reuses_a_finished_folder_and_takes_realistic_sizes(tmp_path):
    first = build_tiny("llava", tmp_path, hidden=64, n_layers=2, vision_layers=2, image_size=56)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = build_tiny("llava", tmp_path, hidden=64, n_layers=2, vision_layers=2, image_size=56)
    assert again == first and (again / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftover temporary folder
    wider = build_tiny("qwen2_vl", tmp_path, hidden=256, n_layers=6, vision_layers=1, image_size=56, vision_hidden=128)
    config = json.loads((wider / "config.json").read_text())
    assert config["text_config"]["hidden_size"] == 256 and config["text_config"]["num_hidden_layers"] == 6
    assert config["vision_config"]["embed_dim"] == 128 and config["vision_config"]["depth"] == 1
    with pytest.raises(ExtractError, match="no tiny model"):
        build_tiny("gpt2", tmp_path)


def test_model_hash_changes_with_the_weight_bytes(tiny_checkpoint, tmp_path):
    source = tiny_checkpoint("paligemma")
    copy = shutil.copytree(source, tmp_path / "copy")
    assert load_model(copy).model_hash == load_model(source).model_hash
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last weight
    weights.write_bytes(bytes(data))
    assert load_model(copy).model_hash != load_model(source).model_hash


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_lora_adapter_changes_captures_and_is_recorded(family, tiny_checkpoint, tiny_images, tmp_path):
    from peft import LoraConfig, get_peft_model

    path = tiny_checkpoint(family)
    base = load_model(path, dtype="float32")
    config = LoraConfig(r=8, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    peft_model = get_peft_model(load_model(path, dtype="float32").model, config)
    peft_model.save_pretrained(tmp_path / "lora")
    tuned = load_model(path, dtype="float32", adapter=tmp_path / "lora")
    assert tuned.adapter == str(tmp_path / "lora") and len(tuned.adapter_hash) == 64
    assert tuned.model_hash == base.model_hash

    def capture(lm):
        adapter = get_adapter(lm)
        capturer = Capturer(lm, adapter, candidate_token_ids(lm.processor, ["yes", "no"]), out_dtype=torch.float32)
        return capturer.run(encode_batch(lm.processor, tiny_images, render_prompt(lm.processor, "q")))

    with torch.no_grad():
        expected = peft_model(**encode_batch(tuned.processor, tiny_images, render_prompt(tuned.processor, "q")), output_hidden_states=True)
    plain, adapted = capture(base), capture(tuned)
    for site in plain.acts:
        assert (plain.acts[site] - adapted.acts[site]).abs().max() > 1e-4, site  # LoRA sits in every module
    assert (adapted.acts["llm/final_token"] - torch.stack(expected.hidden_states)[:, :, -1]).abs().max() <= 1e-6
    again = load_model(path, dtype="float32", adapter=tmp_path / "lora")
    assert again.adapter_hash == tuned.adapter_hash
    assert torch.equal(capture(again).acts["llm/image_mean"], adapted.acts["llm/image_mean"])


def test_prompt_uses_the_chat_template_else_the_plain_form(tiny_checkpoint):
    llava = load_model(tiny_checkpoint("llava"))
    text = render_prompt(llava.processor, "Is it benign?")
    assert text == "USER: <image>\nIs it benign? ASSISTANT:"
    pali = load_model(tiny_checkpoint("paligemma"))
    assert render_prompt(pali.processor, "Is it benign?", plain_prompt=get_adapter(pali).plain_prompt) == "<image>Is it benign?"
    with pytest.raises(ExtractError, match="instruction is empty"):
        render_prompt(llava.processor, "  ")


def test_encode_batch_pads_on_the_left(tiny_checkpoint, tiny_images):
    lm = load_model(tiny_checkpoint("qwen2_vl"))
    lm.processor.tokenizer.padding_side = "right"
    batch = encode_batch(lm.processor, tiny_images, render_prompt(lm.processor, "q"))
    mask = batch["attention_mask"]
    assert not mask.all()  # the images' token counts differ, so there is padding
    assert mask[:, -1].all() and not mask[:, 0].all()


def test_loading_errors_are_one_line_and_actionable(tiny_checkpoint, tmp_path):
    path = tiny_checkpoint("llava")
    cases = [
        (lambda: load_model(tmp_path / "missing"), "model folder .* does not exist"),  # issue 15 item 14: said so, not "not a checkpoint folder"
        (lambda: load_model(path, dtype="int8"), "dtype 'int8'"),
        (lambda: load_model(path, device="tpu:0"), "not a torch device"),
        (lambda: load_model(path, adapter=tmp_path), "not a peft adapter folder"),
    ]
    if not torch.cuda.is_available():
        cases.append((lambda: load_model(path, device="cuda"), "CUDA is not available"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((path / "config.json").read_text())
    cases.append((lambda: load_model(empty), "no weight files"))
    for call, message in cases:
        with pytest.raises(ExtractError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_a_hub_id_is_loaded_from_its_snapshot_folder(tiny_checkpoint, monkeypatch):
    import huggingface_hub

    folder = tiny_checkpoint("gemma3")
    asked = {}

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None):
        asked.update(repo_id=repo_id, revision=revision)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    lm = load_model("someorg/tiny-gemma3", revision="v1")
    assert asked == {"repo_id": "someorg/tiny-gemma3", "revision": "v1"}
    assert lm.model_id == "someorg/tiny-gemma3" and lm.model_revision == "v1" and lm.path == folder
    assert lm.model_hash == _manual_hash(folder)


def test_load_model_takes_torch_values_and_records_their_names(tiny_checkpoint):
    path = tiny_checkpoint("llava")
    lm = load_model(path, dtype=torch.float32, device=torch.device("cpu"))
    assert lm.model.dtype == torch.float32 and lm.compute_dtype == "float32" and lm.device == "cpu"
    assert load_model(path, dtype="float32").model_hash == lm.model_hash  # a name is parsed by the same map
    with pytest.raises(ExtractError, match="not a compute dtype") as info:
        load_model(path, dtype=torch.int8)
    assert "\n" not in str(info.value)
