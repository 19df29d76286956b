"""The web demo behind ``segnet-domains serve``: a page and an HTTP API that segment uploaded files.

* :mod:`~segnet_domains.web.models` — the served checkpoints, one shared
  :class:`~segnet_domains.inference.Segmenter` each (with a lock).
* :mod:`~segnet_domains.web.jobs` — one upload → the mask file with its
  geometry, through the same library functions as the CLI
  (``predict-image``, ``predict-volume``, ``tile``), plus the arrays the page draws.
* :mod:`~segnet_domains.web.samples` — one-click samples from the demo's generators.
* :mod:`~segnet_domains.web.app` — the FastAPI application (``GET /api/models``,
  ``POST /api/predict``, ``POST /api/preview``, the page in ``static/``).

FastAPI is an optional dependency (the ``web`` extra); importing
:mod:`segnet_domains.web.app` needs it, the other modules do not.
"""

from segnet_domains.web.models import ModelRegistry, ServedModel, demo_checkpoints

__all__ = ["ModelRegistry", "ServedModel", "demo_checkpoints"]
