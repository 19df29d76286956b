"""The web demo's tests run the real server (uvicorn on 127.0.0.1), never a mocked app."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi, uvicorn, python-multipart) is not installed")
pytest.importorskip("uvicorn", reason="the web extra (fastapi, uvicorn, python-multipart) is not installed")
