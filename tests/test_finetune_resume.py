"""SIGKILL during training, rerun the same command: the same adapter bytes as an uninterrupted run (CPU, one thread)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from layerprobe.testing.images import make_dataset
from layerprobe.finetune import output
from layerprobe.finetune.callbacks import COMPLETE_MARKER

SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from layerprobe.finetune import FinetuneConfig, run_finetune
model, dataset, out = sys.argv[1:4]
run_finetune(FinetuneConfig(model=model, dataset=dataset, out=out, epochs=3, batch_size=2, dtype="float32", device="cpu",
                            save_steps=2, learning_rate=1e-3, progress=False))
"""


def _start(model: Path, dataset: Path, out: Path) -> subprocess.Popen:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(model), str(dataset), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()[-2000:]


def test_killed_run_resumes_to_the_same_adapter(tiny_checkpoint, tmp_path):
    """Killed twice: mid-epoch 2 (after checkpoint 4), then at the end of epoch 2 (checkpoint 6, taken
    just before that epoch's evaluation, which the resumed run does not redo)."""
    model = tiny_checkpoint("qwen2_5_vl")
    dataset = make_dataset(tmp_path / "data", n_per_class=4, size=56)  # 6 train samples: 3 steps an epoch, 9 in all
    _finish(_start(model, dataset, tmp_path / "reference"))
    killed = tmp_path / "killed"
    for step in (4, 6):
        process = _start(model, dataset, killed)
        marker = output.work_folder(killed) / "checkpoints" / f"checkpoint-{step}" / COMPLETE_MARKER
        deadline = time.monotonic() + 240
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists() and process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not killed.exists()  # nothing looks complete
    _finish(_start(model, dataset, killed))
    reference, resumed = tmp_path / "reference", killed
    assert (resumed / "adapter_model.safetensors").read_bytes() == (reference / "adapter_model.safetensors").read_bytes()
    assert not output.work_folder(resumed).exists()
