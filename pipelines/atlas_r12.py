"""ATLAS R1.2 (standard_MNI) stroke lesions with SegNet, 5-fold patient-level (X-Net protocol).

    python pipelines/atlas_r12.py [CONFIG] [--data-root DIR] [--out DIR] [--resume] [--set k=v ...]

CONFIG defaults to ``pipelines/configs/atlas_r12.yaml``. Same as
``segnet-domains train CONFIG …``: the training engine is ``segnet_domains.training``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from segnet_domains.cli import run_pipeline

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "atlas_r12.yaml"

if __name__ == "__main__":
    sys.exit(run_pipeline(DEFAULT_CONFIG))
