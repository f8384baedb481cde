"""The adapter registry, site specs and the generic adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from layerprobe.errors import ExtractError
from layerprobe.extract import Capturer, candidate_token_ids, encode_batch, get_adapter, load_model, render_prompt, supported_families
from layerprobe.extract.model.adapters import GenericAdapter, load_site_spec
from layerprobe.testing import tiny_builders, tiny_families

EXAMPLE_SPEC = Path(__file__).resolve().parents[1] / "examples" / "sitespec-llava.toml"
# The families a shipped checkpoint can have: one per tiny builder (test_testing_tiny.py checks that
# every adapter family has a builder and vice versa), so adding a family edits no test.
FAMILIES = {b.model_type for b in tiny_builders().values()}
VARIABLE_CROPS = ("llava_next", "idefics3", "smolvlm")  # crops per image differ: the generic split cannot know


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    cache: dict = {}

    def get(family: str):
        if family not in cache:
            cache[family] = load_model(tiny_checkpoint(family), dtype="float32")
        return cache[family]

    return get


def _run(lm, adapter, images):
    capturer = Capturer(lm, adapter, candidate_token_ids(lm.processor, ["yes", "no"]), out_dtype=torch.float32)
    prompt = render_prompt(lm.processor, "Is it benign?", plain_prompt=adapter.plain_prompt)
    return capturer, capturer.run(encode_batch(lm.processor, images, prompt))


def test_registry_has_every_family_and_accepts_models():
    assert set(supported_families()) == FAMILIES  # discovery finds every shipped family module
    assert len(FAMILIES) >= 9  # the nine families of the paper's models (a vanished builder would shrink both)
    for model_type in supported_families():
        adapter = get_adapter(model_type)
        assert adapter.model_type == model_type


def test_get_adapter_takes_a_model_or_loaded_model(loaded):
    lm = loaded("gemma3")
    assert get_adapter(lm) is get_adapter(lm.model) is get_adapter("gemma3")


def test_unknown_family_without_a_spec_says_what_is_supported_and_how_to_write_one():
    with pytest.raises(ExtractError) as info:
        get_adapter("hulumed_qwen3")
    message = str(info.value)
    assert "\n" not in message and "'hulumed_qwen3'" in message
    assert all(family in message for family in FAMILIES)
    assert "site spec" in message and "vision_layers" in message and "sitespec-llava.toml" in message


@pytest.mark.parametrize("family", tiny_families())
def test_generic_spec_reproduces_the_registered_adapter(family, loaded, tiny_images):
    lm = loaded(family)
    registered = get_adapter(lm)
    paths = registered.paths
    spec = {
        "vision_layers": paths.vision_layers,
        "connector": paths.connector,
        "llm_layers": paths.llm_layers,
        "llm_norm": paths.llm_norm,
        "vision_prefix_tokens": registered.vision_prefix_tokens(lm.model.config),
        "plain_prompt": registered.plain_prompt,
    }
    if paths.connector_inner:
        spec["connector_inner"] = paths.connector_inner
    generic = get_adapter(lm, site_spec=spec)
    assert isinstance(generic, GenericAdapter) and generic.model_type == lm.model_type
    reference_capturer, reference = _run(lm, registered, tiny_images)
    if family in VARIABLE_CROPS:
        with pytest.raises(ExtractError, match="rows"):
            _run(lm, generic, tiny_images)
        return
    capturer, result = _run(lm, generic, tiny_images)
    assert capturer.site_specs() == reference_capturer.site_specs()
    for site, acts in reference.acts.items():
        assert torch.equal(result.acts[site], acts), site
    assert torch.equal(result.answer_logits, reference.answer_logits)


def test_example_spec_file_reproduces_llava(loaded, tiny_images):
    lm = loaded("llava")
    generic = get_adapter(lm, site_spec=EXAMPLE_SPEC)
    assert isinstance(generic, GenericAdapter) and generic.prefix_tokens == 1
    _, from_file = _run(lm, generic, tiny_images)
    _, registered = _run(lm, get_adapter(lm), tiny_images)
    for site, acts in registered.acts.items():
        assert torch.equal(from_file.acts[site], acts), site


def test_llm_norm_defaults_next_to_the_layers():
    adapter = load_site_spec({"vision_layers": "v.layers", "connector": "c", "llm_layers": "model.text.layers"})
    assert adapter.paths.llm_norm == "model.text.norm" and adapter.paths.connector_inner is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vision_layers = ", "not valid TOML"),
        ('vision_layers = "a"\nconnector = "b"', "missing llm_layers"),
        ('vision_layers = "a"\nconnector = "b"\nllm_layers = "c"\nvison_prefix = 1', "unknown key"),
        ('vision_layers = "a"\nconnector = "b"\nllm_layers = "c"\nvision_prefix_tokens = -1', "non-negative integer"),
        ('vision_layers = "a "\nconnector = "b"\nllm_layers = "c"', "dotted module path"),
    ],
)
def test_bad_site_specs_are_one_line_errors(text, message, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    with pytest.raises(ExtractError, match=message) as info:
        load_site_spec(spec)
    assert "\n" not in str(info.value)


def test_missing_spec_file_and_wrong_paths_are_errors(loaded):
    with pytest.raises(ExtractError, match="does not exist"):
        get_adapter("custom", site_spec="/no/such/spec.toml")
    lm = loaded("llava")
    wrong = get_adapter(lm, site_spec={"vision_layers": "model.vision_tower.encoder.layer", "connector": "model.multi_modal_projector", "llm_layers": "model.language_model.layers"})
    with pytest.raises(ExtractError, match="close matches: model.vision_tower.encoder.layers"):
        Capturer(lm, wrong, [1, 2])
    not_a_list = get_adapter(lm, site_spec={"vision_layers": "model.vision_tower", "connector": "model.multi_modal_projector", "llm_layers": "model.language_model.layers"})
    with pytest.raises(ExtractError, match="not a non-empty list of layers"):
        Capturer(lm, not_a_list, [1, 2])


def _custom_code_checkpoint(source: Path, folder: Path) -> Path:
    """A copy of the tiny LLaVA whose config and model class come from code shipped in the folder."""
    import json
    import shutil

    shutil.copytree(source, folder)
    (folder / "configuration_mycustom.py").write_text(
        "from transformers import LlavaConfig\n\n\nclass MyCustomConfig(LlavaConfig):\n    model_type = 'my_custom_vlm'\n"
    )
    (folder / "modeling_mycustom.py").write_text(
        "from transformers import LlavaForConditionalGeneration\n\nfrom .configuration_mycustom import MyCustomConfig\n\n\n"
        "class MyCustomForCausalLM(LlavaForConditionalGeneration):\n    config_class = MyCustomConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="my_custom_vlm",
        architectures=["MyCustomForCausalLM"],
        auto_map={"AutoConfig": "configuration_mycustom.MyCustomConfig", "AutoModelForCausalLM": "modeling_mycustom.MyCustomForCausalLM"},
    )
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_custom_code_model_needs_trust_and_a_spec(tiny_checkpoint, tiny_images, tmp_path):
    folder = _custom_code_checkpoint(tiny_checkpoint("llava"), tmp_path / "custom")
    with pytest.raises(ExtractError, match="--trust-remote-code"):
        load_model(folder)
    lm = load_model(folder, dtype="float32", trust_remote_code=True)
    assert lm.model_type == "my_custom_vlm" and type(lm.model).__name__ == "MyCustomForCausalLM"
    with pytest.raises(ExtractError, match="no adapter for model_type 'my_custom_vlm'"):
        get_adapter(lm)
    adapter = get_adapter(lm, site_spec=EXAMPLE_SPEC)
    capturer, batch_result = _run(lm, adapter, tiny_images)
    prompt = render_prompt(lm.processor, "Is it benign?")
    with torch.no_grad():
        out = lm.model(**encode_batch(lm.processor, tiny_images, prompt), output_hidden_states=True)
    assert (batch_result.acts["llm/final_token"] - torch.stack(out.hidden_states)[:, :, -1]).abs().max() <= 1e-6
    assert {spec.name for spec in capturer.site_specs()} == {"vision/mean", "connector/mean", "llm/image_mean", "llm/final_token"}
