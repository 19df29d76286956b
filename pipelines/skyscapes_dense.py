"""SkyScapes-Dense aerial scenes with SegNet: the SkyScapes paper's baseline table.

    python pipelines/skyscapes_dense.py [CONFIG] [--data-root DIR] [--out DIR] [--resume] [--set k=v ...]

CONFIG defaults to ``pipelines/configs/skyscapes_dense.yaml``. Same as
``segnet-domains train CONFIG …``: the training engine is ``segnet_domains.training``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from segnet_domains.cli import run_pipeline

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "skyscapes_dense.yaml"

if __name__ == "__main__":
    sys.exit(run_pipeline(DEFAULT_CONFIG))
