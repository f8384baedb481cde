"""Tiny random-weight checkpoints, one builder module per family (mirroring the adapters).

- :mod:`.registry`: :class:`~.registry.TinySize`, the ``@register`` decorator, discovery;
- :mod:`.parts`: the offline tokenizer, chat template and config fields every builder shares;
- :mod:`.build`: :func:`~.build.build_tiny`, which saves a builder's model like a user's checkpoint;
- every other module: the builders of one family, named like the family's adapter module
  (variants sit with their family, e.g. ``llava_siglip`` in ``llava``).
"""
