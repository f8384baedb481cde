"""The models of the study (paper Table S1) and the two general-domain bases, as recipes.

Each entry says where the checkpoint lives on the Hugging Face Hub, which transformers family
(`model_type`) it loads as, and what a user must add: models whose `model_type` has a built-in
adapter run with `--model ID` alone; custom-code models need `--trust-remote-code` and a site spec
(`--site-spec FILE`, see `layerprobe.extract.model.adapters.generic`), because their module paths are
defined by their own code, which we cannot load offline to check.

Hub ids are as published by their authors; a user with a local copy passes the folder instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelRecipe:
    name: str
    """Name used in the paper's tables, e.g. ``MedGemma-4B``."""
    hub_id: str
    """Hugging Face repository id."""
    model_type: str
    """The checkpoint's ``config.model_type``; selects the family adapter."""
    base: str
    """Base MLLM the model starts from (paper Table S1)."""
    params_b: float
    """Parameter count in billions (paper Table S1)."""
    trust_remote_code: bool = False
    """True when the checkpoint ships its own modelling code (needs ``--trust-remote-code``)."""
    medical: bool = True
    """False for the general-domain bases the paper compares against."""

    def status(self, supported: frozenset[str]) -> str:
        """``supported`` when a built-in adapter covers it, else what the user must provide."""
        if self.model_type in supported and not self.trust_remote_code:
            return "supported"
        return "needs --trust-remote-code and --site-spec"


MODELS: tuple[ModelRecipe, ...] = (
    ModelRecipe("MedVLM-R1", "JZPeterPan/MedVLM-R1", "qwen2_vl", "Qwen2-VL-2B", 2.21),
    ModelRecipe("HuatuoGPT-Vision-7B", "FreedomIntelligence/HuatuoGPT-Vision-7B-Qwen2.5VL", "qwen2_5_vl", "Qwen2.5-VL-7B", 8.29),
    ModelRecipe("HuatuoGPT-Vision-34B", "FreedomIntelligence/HuatuoGPT-Vision-34B", "llava_llama", "LLaVA (CLIP ViT-L/14@336 + Yi-1.5-34B)", 34.75, trust_remote_code=True),
    ModelRecipe("Lingshu-7B", "lingshu-medical-mllm/Lingshu-7B", "qwen2_5_vl", "Qwen2.5-VL-7B", 8.29),
    ModelRecipe("Lingshu-32B", "lingshu-medical-mllm/Lingshu-32B", "qwen2_5_vl", "Qwen2.5-VL-32B", 33.45),
    ModelRecipe("ShizhenGPT-7B-VL", "FreedomIntelligence/ShizhenGPT-7B-VL", "qwen2_5_vl", "Qwen2.5-VL-7B", 8.29),
    ModelRecipe("ShizhenGPT-32B-VL", "FreedomIntelligence/ShizhenGPT-32B-VL", "qwen2_5_vl", "Qwen2.5-VL-32B", 33.45),
    ModelRecipe("Hulu-Med-4B", "ZJU-AI4H/Hulu-Med-4B", "hulumed_qwen3", "SigLIP-NaViT + Qwen3-4B", 4.83, trust_remote_code=True),
    ModelRecipe("Hulu-Med-7B", "ZJU-AI4H/Hulu-Med-7B", "hulumed_qwen2", "SigLIP-NaViT + Qwen2.5-7B", 8.04, trust_remote_code=True),
    ModelRecipe("Hulu-Med-14B", "ZJU-AI4H/Hulu-Med-14B", "hulumed_qwen3", "SigLIP-NaViT + Qwen3-14B", 15.21, trust_remote_code=True),
    ModelRecipe("Hulu-Med-32B", "ZJU-AI4H/Hulu-Med-32B", "hulumed_qwen2", "SigLIP-NaViT + Qwen2.5-32B", 33.21, trust_remote_code=True),
    ModelRecipe("MedGemma-4B", "google/medgemma-4b-it", "gemma3", "Gemma-3-4B (MedSigLIP)", 4.30),
    ModelRecipe("MedGemma-27B", "google/medgemma-27b-it", "gemma3", "Gemma-3-27B (MedSigLIP)", 27.43),
    ModelRecipe("MedGemma-1.5-4B", "google/medgemma-1.5-4b-it", "gemma3", "Gemma-3-4B (MedSigLIP)", 4.30),
    ModelRecipe("Qwen2.5-VL-7B", "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", "general-domain base", 8.29, medical=False),
    ModelRecipe("Gemma-3-4B", "google/gemma-3-4b-it", "gemma3", "general-domain base", 4.30, medical=False),
)


def find_model(name: str) -> ModelRecipe | None:
    """The recipe whose paper name or hub id equals ``name`` (case-insensitive), else None."""
    key = name.lower()
    for recipe in MODELS:
        if key in (recipe.name.lower(), recipe.hub_id.lower()):
            return recipe
    return None
