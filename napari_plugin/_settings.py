"""Settings the widget remembers between sessions (the last checkpoint), in a small JSON file.

The file is ``<user config dir>/segnet-domains/napari.json`` (platformdirs), or
under ``$SEGNET_DOMAINS_CONFIG_DIR`` when that is set (tests use it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from segnet_domains.io.atomic import atomic_output


def settings_path() -> Path:
    """Where the settings live."""
    override = os.environ.get("SEGNET_DOMAINS_CONFIG_DIR")
    if override:
        return Path(override) / "napari.json"
    from platformdirs import user_config_dir

    return Path(user_config_dir("segnet-domains")) / "napari.json"


def load_settings() -> dict[str, Any]:
    """The saved settings, or ``{}`` when there are none or the file is unreadable."""
    path = settings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_settings(**updates: Any) -> None:
    """Merge ``updates`` into the saved settings (written atomically)."""
    path = settings_path()
    data = {**load_settings(), **updates}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
