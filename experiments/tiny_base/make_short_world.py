"""A curriculum world: two objects per video (kinds single,multi) like the target world, but short videos (5-8 s,
10-16 frames = 5-8 temporal tokens) and another seed (1), so none of its videos or labels is the target world's."""
import sys
from pathlib import Path

from vtg.data.synth import SynthConfig, generate

cfg = SynthConfig(n_videos=3000, seed=1, min_duration=5.0, max_duration=8.0, kinds=("single", "multi"), size=56,
                  split_fractions=(0.8, 0.0, 0.2))
generate(cfg, Path(sys.argv[1]), progress=print, workers=1)
