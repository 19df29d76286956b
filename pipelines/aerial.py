"""Aerial / satellite land-cover training with SegNet and MONAI.

    python pipelines/aerial.py [CONFIG] [--data-root DIR] [--out DIR] [--resume] [--set k=v ...]

CONFIG defaults to ``pipelines/configs/aerial.yaml``. Data: ``ROOT/images/*.tif``
(or PNG tiles) with ``ROOT/labels/*.tif`` matched by name. Same as
``segnet-domains train CONFIG …``: the engine is ``segnet_domains.training``,
the task ``segnet_domains.geo.aerial_task.AerialTask``. The best checkpoint
then tiles whole scenes: ``segnet-domains tile SCENE... --model OUT/best.pt --out-dir DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from segnet_domains.cli import run_pipeline

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "aerial.yaml"

if __name__ == "__main__":
    sys.exit(run_pipeline(DEFAULT_CONFIG))
