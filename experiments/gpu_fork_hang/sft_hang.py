"""Reproduces the DataLoader hang found on an H200 (2026-11-27; experiments/gpu_fork_hang/README.md): one tiny
`vtg train sft` run, 100 steps, with `--workers` DataLoader workers and the video check every `--check` steps (0: off).
With PyAV < 18 and no fork hook in vtg.data.video, --workers 1 --check 1000 hangs at step 0 (a stack dump after
--dump-after s).

    python -m experiments.gpu_fork_hang.sft_hang --workers 1 --check 1000     # from the repository root

(At commit 2984eb0, where it was measured: `python bench/gpu/sft_hang.py --workers 1 --check 1000`.)
"""

import argparse
import faulthandler
import tempfile
import time
from pathlib import Path

from bench.gpu.cli_smoke import run_job
from bench.gpu.grpo_step import import_vtg

p = argparse.ArgumentParser()
p.add_argument("--workers", type=int, default=1)
p.add_argument("--check", type=int, default=1000)
p.add_argument("--dump-after", type=float, default=35)
a = p.parse_args()
faulthandler.dump_traceback_later(a.dump_after, repeat=False)
import_vtg()
from vtg.data.synth import SynthConfig, generate  # noqa: E402
from vtg.train.tiny_model import build_tiny_model  # noqa: E402
work = Path(tempfile.mkdtemp())
generate(SynthConfig(n_videos=30, seed=0, min_duration=8.0, max_duration=20.0, kinds=("single",)), work / "w",
         workers=1)
model = build_tiny_model("qwen2.5-vl", work / "m", size="small")
t = time.perf_counter()
row = run_job("sft", "sft", "recipes/tiny/sft/config_default.yaml",
              {"model": model, "train_file": work / "w" / "train.jsonl", "logging_steps": 10, "save_steps": 10**6,
               "output_dir": work / "o", "max_steps": 100, "dataloader_num_workers": a.workers,
               "video_check_every": a.check})
print(f"RESULT workers={a.workers} check={a.check}: {time.perf_counter() - t:.1f} s, gaps {row['video_check_gap']}",
      flush=True)
