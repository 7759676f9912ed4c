"""The two-object world of experiments/learning's binding runs (bl_sm48: 3000 videos, kinds single,multi, 8-20 s,
56 px, 80/0/20 train/test, seed 0), written with one worker (the machine's other core is busy)."""
import sys
from pathlib import Path

from vtg.data.synth import SynthConfig, generate

out = Path(sys.argv[1])
cfg = SynthConfig(n_videos=3000, seed=0, min_duration=8.0, max_duration=20.0, kinds=("single", "multi"), size=56,
                  split_fractions=(0.8, 0.0, 0.2))
generate(cfg, out, progress=print, workers=1)
