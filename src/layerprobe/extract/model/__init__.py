"""The model side of extraction: load a checkpoint, find its sites, build its prompts.

- :mod:`.loading`: a local folder or hub id -> :class:`~.loading.LoadedModel` (weights, processor, hashes);
- :mod:`.dtypes`: compute-dtype names <-> torch dtypes, the one map;
- :mod:`.processors`: video-free processors for the families whose stock one needs torchvision;
- :mod:`.prompt`: chat-template prompts, candidate answer tokens, processor batches;
- :mod:`.adapters`: where each family's sites are, one module per family, found on disk;
- :mod:`.model_registry`: the study's models as recipes (hub id, family, what a user must add).

Nothing here knows about datasets or the store.
"""
