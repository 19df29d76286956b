"""MFN RGB-thermal scenes with a 4-channel SegNet: RTFNet Table III.

    python pipelines/mfn.py [CONFIG] [--data-root DIR] [--out DIR] [--resume] [--set k=v ...]

CONFIG defaults to ``pipelines/configs/mfn.yaml``. Same as
``segnet-domains train CONFIG …``: the training engine is ``segnet_domains.training``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from segnet_domains.cli import run_pipeline

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "mfn.yaml"

if __name__ == "__main__":
    sys.exit(run_pipeline(DEFAULT_CONFIG))
