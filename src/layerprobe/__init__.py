"""layerprobe: activation store and batched offline probe engine for multimodal LLMs."""
__version__ = "0.1.0"
