"""Image-only processors for the families whose stock processor also builds a video processor.

The Qwen2-VL, Qwen2.5-VL, Qwen3-VL and SmolVLM processors construct a video processor, and every
video processor of transformers 5 needs torchvision, which cannot be installed beside the CPU torch
this project pins. Extraction only ever feeds images, so these subclasses keep the image processor
and the tokenizer and nothing else. Design choices:
- each ``__init__`` names its arguments explicitly (``image_seq_len``...): ``ProcessorMixin``
  reads the signature to decide what to save and reload, so anything hidden in ``**kwargs`` is
  silently dropped on a round trip;
- ``to_dict`` writes the stock class name into ``processor_config.json``, so a checkpoint saved
  here loads with ``AutoProcessor`` on a machine that has torchvision, like any user checkpoint.
"""

from __future__ import annotations

from transformers import ProcessorMixin
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
from transformers.models.smolvlm.processing_smolvlm import SmolVLMProcessor


class _StockName:
    """Save under the stock processor's class name (``_stock``)."""

    _stock: type[ProcessorMixin]

    def to_dict(self) -> dict:
        out = super().to_dict()  # type: ignore[misc]
        out["processor_class"] = self._stock.__name__
        return out


def _qwen_image_only(stock: type[ProcessorMixin], name: str) -> type[ProcessorMixin]:
    """A module-level subclass of a Qwen processor (importable by name, so it pickles) with no video processor."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        stock.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    doc = f"{stock.__name__} without the video processor."
    return type(name, (_StockName, stock), {"__init__": __init__, "_stock": stock, "__module__": __name__, "__doc__": doc})


Qwen2VLImageOnlyProcessor = _qwen_image_only(Qwen2VLProcessor, "Qwen2VLImageOnlyProcessor")
Qwen2_5_VLImageOnlyProcessor = _qwen_image_only(Qwen2_5_VLProcessor, "Qwen2_5_VLImageOnlyProcessor")
Qwen3VLImageOnlyProcessor = _qwen_image_only(Qwen3VLProcessor, "Qwen3VLImageOnlyProcessor")


class SmolVLMImageOnlyProcessor(_StockName, SmolVLMProcessor):
    """SmolVLM processor without the video processor."""

    _stock = SmolVLMProcessor

    def __init__(self, image_processor=None, tokenizer=None, image_seq_len: int = 169, chat_template=None, **kwargs):
        SmolVLMProcessor.__init__(
            self, image_processor, tokenizer, None, image_seq_len=image_seq_len, chat_template=chat_template, **kwargs
        )

    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        # SmolVLM's override reads video-processor defaults (frames, fps); images never need them.
        return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)


IMAGE_ONLY_PROCESSORS: dict[str, type[ProcessorMixin]] = {
    "qwen2_vl": Qwen2VLImageOnlyProcessor,
    "qwen2_5_vl": Qwen2_5_VLImageOnlyProcessor,
    "qwen3_vl": Qwen3VLImageOnlyProcessor,
    "smolvlm": SmolVLMImageOnlyProcessor,
}
"""model_type -> processor class loaded instead of ``AutoProcessor`` (the video-free variants)."""
