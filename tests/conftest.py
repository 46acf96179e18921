import importlib.util

import pytest

LAVA = importlib.util.find_spec("lava") is not None and importlib.util.find_spec("lava.lib.dl") is not None

requires_lava = pytest.mark.skipif(not LAVA, reason="lava-nc / lava-dl not installed (they need CPython 3.10)")
