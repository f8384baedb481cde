"""The data side of extraction: which images, in which order, with which labels, decoded how.

- :mod:`.manifest`: :class:`~.manifest.Manifest`, the ordered labelled sample list (a run's dataset identity);
- :mod:`.files`: which files of a folder are images (hidden files and archive metadata skipped);
- :mod:`.recipes`: the study's datasets, read as their archives unpack;
- :mod:`.datasets`: ``--dataset`` values (folders, tables, ``recipe:folder``) -> manifests;
- :mod:`.images`: one file -> the 8-bit RGB picture every processor takes, plus its SHA-256.

Imports run one way: ``datasets`` -> ``recipes`` -> ``manifest``, ``files``. Nothing here loads a model.
"""
