"""RITE retinal vessel (or artery/vein) training with SegNet and MONAI.

    python pipelines/rite_vessels.py [CONFIG] [--data-root DIR] [--out DIR] [--resume] [--set k=v ...]

CONFIG defaults to ``pipelines/configs/rite_vessels.yaml``; ``--set task=rite_av``
trains the artery/vein task. Same as ``segnet-domains train CONFIG …``: the
training engine is ``segnet_domains.training``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from segnet_domains.cli import run_pipeline

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "rite_vessels.yaml"

if __name__ == "__main__":
    sys.exit(run_pipeline(DEFAULT_CONFIG))
