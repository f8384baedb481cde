"""Capture correctness on tiny random-weight models of every family, loaded like a user's checkpoint.

References are computed independently of the hooks: LLM sites from ``output_hidden_states``,
vision sites from a separate pass through the vision tower pooled with explicit per-image loops,
logits from the model's own full forward. fp32 models for exactness: LLM sites 1e-6 absolute;
vision means 1e-6 relative to the largest value (sums over hundreds of tokens in another order);
logits 1e-5 (a differently shaped matmul); bf16 for batched vs one-at-a-time.
"""

from __future__ import annotations

import pytest
import torch

from layerprobe.errors import ExtractError
from layerprobe.extract import Capturer, candidate_token_ids, encode_batch, get_adapter, load_model, render_prompt
from layerprobe.testing import tiny_families

EXACT = 1e-6
BF16_REL = 2e-2
"""bf16 batched vs one-at-a-time: max |a - b| / max |b| per site (field notes: ~1e-2; here <= 6e-3)."""
QWEN = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
NEXT_LINEAR = {  # the linear right after the connector's inner activation: output = next(inner) per token
    "llava": "model.multi_modal_projector.linear_2",
    "llava_siglip": "model.multi_modal_projector.linear_2",
    "llava_next": "model.multi_modal_projector.linear_2",
    "qwen2_vl": "model.visual.merger.mlp.2",
    "qwen2_5_vl": "model.visual.merger.mlp.2",
    "qwen3_vl": "model.visual.merger.linear_fc2",
}


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    cache: dict = {}

    def get(family: str, dtype: str = "float32"):
        if (family, dtype) not in cache:
            cache[family, dtype] = load_model(tiny_checkpoint(family), dtype=dtype)
        return cache[family, dtype]

    return get


def _capture(lm, images, out_dtype=torch.float32, candidates=("yes", "no")):
    adapter = get_adapter(lm)
    prompt = render_prompt(lm.processor, "Is the finding benign?", plain_prompt=adapter.plain_prompt)
    capturer = Capturer(lm, adapter, candidate_token_ids(lm.processor, candidates), out_dtype=out_dtype)
    batch = encode_batch(lm.processor, images, prompt)
    return capturer, batch, capturer.run(batch)


def _assert_close_scaled(got, ref):
    """Means over hundreds of tokens: 1e-6 relative to the largest value (summation order differs)."""
    assert got.shape == ref.shape
    assert (got - ref).abs().max() <= EXACT * max(1.0, ref.abs().max().item())


def _real_crops(pixels):
    return (pixels != 0).flatten(2).any(-1)


def _vision_reference(family, lm, batch):
    """(V, B, Dv) per-image means from a separate vision-tower pass, pooled with plain loops."""
    inner = lm.model.model
    n_images = len(batch["input_ids"])
    if family in QWEN:
        out = inner.visual(batch["pixel_values"], grid_thw=batch["image_grid_thw"], output_hidden_states=True)
        sizes = batch["image_grid_thw"].prod(-1).tolist()
        return torch.stack([torch.stack([seg.mean(0) for seg in h.split(sizes)]) for h in out.hidden_states[1:]])
    if family in ("idefics3", "smolvlm"):
        real = _real_crops(batch["pixel_values"])
        pixels, pixel_mask = batch["pixel_values"][real], batch["pixel_attention_mask"][real].bool()
        p = lm.model.config.vision_config.patch_size
        patch_mask = pixel_mask.unfold(1, p, p).unfold(2, p, p).flatten(3).any(-1)
        out = inner.vision_model(pixel_values=pixels, patch_attention_mask=patch_mask, output_hidden_states=True)
        owner = torch.repeat_interleave(torch.arange(n_images), real.sum(1))
        keep = patch_mask.flatten(1)
        return torch.stack([torch.stack([h[owner == b][keep[owner == b]].mean(0) for b in range(n_images)]) for h in out.hidden_states[1:]])
    if family == "llava_next":
        real = _real_crops(batch["pixel_values"])
        out = inner.vision_tower(batch["pixel_values"][real], output_hidden_states=True)
        owner = torch.repeat_interleave(torch.arange(n_images), real.sum(1))
        return torch.stack([torch.stack([h[owner == b][:, 1:].mean((0, 1)) for b in range(n_images)]) for h in out.hidden_states[1:]])
    out = inner.vision_tower(batch["pixel_values"], output_hidden_states=True)
    skip = 1 if family == "llava" else 0  # CLIP's CLS
    return torch.stack([h[:, skip:].mean(1) for h in out.hidden_states[1:]])


@pytest.mark.parametrize("family", tiny_families())
def test_every_site_matches_independent_references(family, loaded, tiny_images):
    lm = loaded(family)
    paths = get_adapter(lm).paths
    watched = {
        "forward": lm.model,
        "vision": lm.model.get_submodule(paths.vision_layers)[0],
        "llm": lm.model.get_submodule(paths.llm_layers)[0],
    }
    calls = dict.fromkeys(watched, 0)
    handles = [m.register_forward_pre_hook(lambda *a, k=k: calls.__setitem__(k, calls[k] + 1)) for k, m in watched.items()]
    capturer, batch, result = _capture(lm, tiny_images)
    for handle in handles:
        handle.remove()
    assert calls == dict.fromkeys(watched, 1)  # one forward per batch captures every site

    specs = {spec.name: spec for spec in capturer.site_specs()}
    assert set(specs) == set(result.acts)
    n = len(tiny_images)
    for name, acts in result.acts.items():
        assert acts.shape == (len(specs[name].layer_names), n, specs[name].hidden), name
        assert acts.dtype == torch.float32 and torch.isfinite(acts).all()

    with torch.no_grad():
        out = lm.model(**batch, output_hidden_states=True)
    hidden = torch.stack(out.hidden_states)  # (L+1, B, T, D)
    assert specs["llm/image_mean"].layer_names == ("embed", *(f"layer_{i}" for i in range(1, len(hidden))))
    image = batch["input_ids"] == capturer.image_token_id
    ref_image = torch.stack([torch.stack([h[b][image[b]].mean(0) for b in range(n)]) for h in hidden])
    assert (result.acts["llm/image_mean"] - ref_image).abs().max() <= EXACT
    assert (result.acts["llm/final_token"] - hidden[:, :, -1]).abs().max() <= EXACT
    ref_logits = out.logits[:, -1, list(capturer.candidate_token_ids)]
    assert (result.answer_logits - ref_logits).abs().max() <= 1e-5

    with torch.no_grad():
        ref_vision = _vision_reference(family, lm, batch)
    _assert_close_scaled(result.acts["vision/mean"], ref_vision)

    connector = result.acts["connector/mean"]
    output = connector[specs["connector/mean"].layer_names.index("output")]
    if family != "llava_next":  # LLaVA-NeXT inserts newline rows and unpads crops after the projector
        assert (output - result.acts["llm/image_mean"][0]).abs().max() <= EXACT
    if family in NEXT_LINEAR:
        inner_site = "connector/inner_mean" if family in QWEN else "connector/mean"
        assert specs[inner_site].layer_names[0] == "inner"
        inner = result.acts[inner_site][0]
        with torch.no_grad():  # the mean commutes with the affine layer that follows the activation
            assert (lm.model.get_submodule(NEXT_LINEAR[family])(inner) - output).abs().max() <= 1e-5
    else:
        assert specs["connector/mean"].layer_names == ("output",) and "connector/inner_mean" not in specs


def test_idefics3_padded_patches_are_left_out_of_the_vision_mean(loaded, tiny_images):
    """Patches marked as padding by ``pixel_attention_mask`` are masked in the tower and in the mean."""
    lm = loaded("idefics3")
    capturer, batch, unpadded = _capture(lm, tiny_images)
    batch["pixel_attention_mask"][0, 0, :, 28:] = 0  # right half of sample 0's first crop is padding
    batch["pixel_values"][0, 0, :, :, 28:] = 0
    padded = capturer.run(batch)
    with torch.no_grad():
        ref = _vision_reference("idefics3", lm, batch)
    _assert_close_scaled(padded.acts["vision/mean"], ref)
    assert (padded.acts["vision/mean"][:, 0] - unpadded.acts["vision/mean"][:, 0]).abs().max() > 1e-3


def test_gemma3_pan_and_scan_crops_are_pooled_per_image(loaded):
    """Pan-and-scan turns each image into a varying number of views; they are pooled per image."""
    from PIL import Image

    lm = loaded("gemma3")
    images = [Image.new("RGB", size, color) for size, color in (((400, 100), "red"), ((300, 300), "green"), ((100, 400), "blue"))]
    adapter = get_adapter(lm)
    prompt = render_prompt(lm.processor, "q")
    scan = dict(do_pan_and_scan=True, pan_and_scan_min_crop_size=32, pan_and_scan_min_ratio_to_activate=1.2)
    batch = lm.processor(images=[[im] for im in images], text=[prompt] * 3, padding=True, return_tensors="pt", **scan)
    views = (batch["input_ids"] == lm.model.config.image_token_id).sum(1) // lm.model.config.mm_tokens_per_image
    assert views.tolist() != [1, 1, 1] and len(batch["pixel_values"]) == views.sum()
    result = Capturer(lm, adapter, candidate_token_ids(lm.processor, ["yes", "no"]), out_dtype=torch.float32).run(batch)
    with torch.no_grad():
        hidden = lm.model.model.vision_tower(batch["pixel_values"], output_hidden_states=True).hidden_states[1:]
    owner = torch.repeat_interleave(torch.arange(3), views)
    ref = torch.stack([torch.stack([h[owner == b].mean((0, 1)) for b in range(3)]) for h in hidden])
    _assert_close_scaled(result.acts["vision/mean"], ref)
    assert (result.acts["connector/mean"][0] - result.acts["llm/image_mean"][0]).abs().max() <= EXACT


@pytest.mark.parametrize("family", tiny_families())
def test_bf16_batched_matches_one_at_a_time(family, loaded, tiny_images):
    lm = loaded(family, "bfloat16")
    _, _, batched = _capture(lm, tiny_images, out_dtype=torch.bfloat16)
    assert all(acts.dtype == torch.bfloat16 for acts in batched.acts.values())
    singles = [_capture(lm, [image], out_dtype=torch.bfloat16)[2] for image in tiny_images]
    for name, acts in batched.acts.items():
        alone = torch.cat([single.acts[name] for single in singles], dim=1).float()
        rel = ((acts.float() - alone).abs().max() / alone.abs().max()).item()
        assert rel <= BF16_REL, (name, rel)
    alone_logits = torch.cat([single.answer_logits for single in singles])
    rel = ((batched.answer_logits - alone_logits).abs().max() / alone_logits.abs().max()).item()
    assert rel <= BF16_REL, ("answer_logits", rel)


def test_right_padding_and_missing_image_are_errors(loaded, tiny_images):
    lm = loaded("llava")
    capturer, batch, _ = _capture(lm, tiny_images[:2])
    right = dict(batch)
    right["attention_mask"] = batch["attention_mask"].clone()
    right["attention_mask"][0, -1] = 0
    with pytest.raises(ExtractError, match="right-padded"):
        capturer.run(right)
    no_image = dict(batch)
    no_image["input_ids"] = batch["input_ids"].masked_fill(batch["input_ids"] == capturer.image_token_id, 5)
    with pytest.raises(ExtractError, match="no image token"):
        capturer.run(no_image)


def test_hooks_are_removed_after_run(loaded, tiny_images):
    lm = loaded("qwen2_vl")
    before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in lm.model.modules())
    _capture(lm, tiny_images[:1])
    after = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in lm.model.modules())
    assert after == before


@pytest.mark.parametrize("family", tiny_families())
def test_generation_in_the_same_pass_leaves_the_sites_alone(family, loaded, tiny_images):
    """Sites and candidate logits with a greedy continuation equal those without; the tokens equal a
    plain ``generate`` of the same model (no hooks)."""
    from transformers import GenerationConfig

    lm = loaded(family)
    capturer, batch, plain = _capture(lm, tiny_images)
    both = capturer.run(batch, max_new_tokens=3)
    for site, acts in plain.acts.items():
        _assert_close_scaled(both.acts[site], acts)
    torch.testing.assert_close(both.answer_logits, plain.answer_logits, atol=1e-5, rtol=0)
    assert plain.generated_ids is None and both.generated_ids.shape[0] == len(tiny_images) and 1 <= both.generated_ids.shape[1] <= 3
    gen = lm.model.generation_config
    eos = gen.eos_token_id
    pad = gen.pad_token_id if gen.pad_token_id is not None else (eos[0] if isinstance(eos, list) else eos)
    config = GenerationConfig(max_new_tokens=3, do_sample=False, num_beams=1, eos_token_id=eos, pad_token_id=pad)
    with torch.inference_mode():
        batch_on = {k: v for k, v in batch.items() if k != "labels"}
        reference = lm.model.generate(**batch_on, generation_config=config)
    assert torch.equal(both.generated_ids, reference[:, batch["input_ids"].shape[1]:])


def test_candidates_sharing_a_first_token_are_an_error(loaded):
    lm = loaded("llava")
    with pytest.raises(ExtractError, match="share their first token"):
        candidate_token_ids(lm.processor, ["malignant", "malignancy"])
    ids = candidate_token_ids(lm.processor, ["yes", "no", "benign"])
    assert len(set(ids)) == 3
    assert ids[0] == lm.processor.tokenizer("yes", add_special_tokens=False)["input_ids"][0]
    with pytest.raises(ExtractError, match="repeat a token"):
        Capturer(lm, get_adapter(lm), [ids[0], ids[0]])


@pytest.mark.gpu
@pytest.mark.parametrize("family", ["llava_next", "qwen2_5_vl", "idefics3", "gemma3"])
def test_capture_on_cuda_matches_cpu(family, tiny_checkpoint, tiny_images):
    """The same hooks and pooling run unchanged on CUDA (fp32; 1e-4 relative for GPU kernels)."""
    path = tiny_checkpoint(family)
    on_cpu = _capture(load_model(path, dtype="float32"), tiny_images)[2]
    on_gpu = _capture(load_model(path, dtype="float32", device="cuda"), tiny_images)[2]
    for site, acts in on_cpu.acts.items():
        assert on_gpu.acts[site].device.type == "cuda"
        assert (on_gpu.acts[site].cpu() - acts).abs().max() <= 1e-4 * max(1.0, acts.abs().max().item()), site
    assert (on_gpu.answer_logits.cpu() - on_cpu.answer_logits).abs().max() <= 1e-3


def test_warm_up_runs_one_forward_per_model_and_process(loaded, monkeypatch) -> None:
    from PIL import Image

    from layerprobe.extract import capture

    lm = loaded("llava")
    calls: list[int] = []
    real = Capturer.run
    monkeypatch.setattr(Capturer, "run", lambda self, inputs, **kw: calls.append(1) or real(self, inputs, **kw))
    monkeypatch.setattr(capture, "_WARM_MODELS", type(capture._WARM_MODELS)())
    adapter = get_adapter(lm)
    prompt = render_prompt(lm.processor, "Is the finding benign?", plain_prompt=adapter.plain_prompt)
    batch = encode_batch(lm.processor, [Image.new("RGB", (32, 32), (120, 60, 30))], prompt)
    first, second = (Capturer(lm, adapter, candidate_token_ids(lm.processor, ["yes", "no"])) for _ in range(2))
    first.warm_up(batch)
    first.warm_up(batch)
    second.warm_up(batch)  # another Capturer of the same model: already warm
    assert len(calls) == 1
    assert lm.model in capture._WARM_MODELS
