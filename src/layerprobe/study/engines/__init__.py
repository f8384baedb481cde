"""Engines run a plan's pending steps: :mod:`.local` in this process, :mod:`.ray_engine` on Ray.

Both take the same inputs (:class:`.base.Engine`) and hand back the same :class:`~..state.Outcome`
per step; only :mod:`.ray_engine` imports ``ray``, and only when it is chosen.
"""
