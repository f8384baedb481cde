"""The one exception type users see.

Library code raises :class:`LayerprobeError` (or a subclass) for anything the user can fix: a
missing file, a corrupt image, a store that does not match, an unknown family. The message is one
line that names the thing and says what to do. The CLI prints it as ``error: <message>`` and exits
1; any other exception is a bug and keeps its traceback (``--debug`` shows tracebacks for all).
"""


class LayerprobeError(Exception):
    """A user-fixable problem; ``str(err)`` is a one-line message naming the thing and the fix."""


class StoreError(LayerprobeError):
    """The store is missing, corrupt, incompatible, or a write to it was refused."""


class ExtractError(LayerprobeError):
    """A model, dataset, image or site spec cannot be used for extraction."""


class ProbeError(LayerprobeError):
    """A probe sweep cannot run on the given stores or settings."""
