"""The Ray engine stops the local instance it started: every process of it ends, none is orphaned.

``stop_local_instance`` kills the autoscaler monitor before ``ray.shutdown`` (which would wait a
second on it; benchmarks/study_overhead.py prints the stop's time); this checks that it does, and
that nothing the instance started outlives the stop: its head processes, and the raylet's children
(workers, agents), found through ``/proc``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")


def _children(pid: int) -> list[int]:
    """Pids of the live processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_engine_stops_the_instance_it_started_and_leaves_no_process(tmp_path):
    from layerprobe.study.engines.ray_engine import RayEngine

    if ray.is_initialized():
        pytest.skip("another test's instance is running")
    engine = RayEngine(None, 1, settings=None)
    assert engine.owned
    assert ray.get(ray.remote(lambda: os.getpid()).remote()) != os.getpid()  # a worker started
    node = ray._private.worker._global_node
    heads = [info.process.pid for infos in node.all_processes.values() for info in infos]
    raylet = node.all_processes["raylet"][0].process.pid
    started = heads + _children(raylet)
    assert len(started) > len(heads)
    kills = []
    real_kill = node._kill_process_type

    def spy(process_type, **kwargs):
        kills.append((process_type, kwargs.get("allow_graceful")))
        return real_kill(process_type, **kwargs)

    node._kill_process_type = spy
    engine.close()
    assert kills[0] == ("monitor", False)  # killed first, not waited on
    assert not ray.is_initialized()
    deadline = time.monotonic() + 10  # workers notice their raylet is gone on their own
    while any(_alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in started if _alive(p)] == []
