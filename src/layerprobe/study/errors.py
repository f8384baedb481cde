"""The study's one error type (a :class:`~layerprobe.errors.LayerprobeError`: one line, user-fixable)."""

from __future__ import annotations

from layerprobe.errors import LayerprobeError


class StudyError(LayerprobeError):
    """The study file, its inputs or the engine cannot be used; the message names the thing and the fix."""
