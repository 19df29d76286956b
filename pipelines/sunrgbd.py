"""SUN RGB-D (toolbox layout) with SegNet: SegNet paper Table 4 (RGB; RGB-D with
``--set data.bands=[red,green,blue,depth]``).

    python pipelines/sunrgbd.py [CONFIG] [--data-root DIR] [--out DIR] [--resume] [--set k=v ...]

CONFIG defaults to ``pipelines/configs/sunrgbd.yaml``. Same as
``segnet-domains train CONFIG …``: the training engine is ``segnet_domains.training``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from segnet_domains.cli import run_pipeline

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "sunrgbd.yaml"

if __name__ == "__main__":
    sys.exit(run_pipeline(DEFAULT_CONFIG))
