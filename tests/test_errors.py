"""Every exception class neurodeploy defines is a NeurodeployError with the exit code
docs/cli.md documents for its kind of failure."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import neurodeploy
from neurodeploy import errors

ROOT = Path(__file__).resolve().parents[1]
#: modules that import Lava at the top (Lava fixes multiprocessing's start method on
#: import, which fails once another test fixed it): read as text below instead
LAVA_PROCESSES = "neurodeploy.lava_src"


def defined_exceptions():
    found = {}
    for info in pkgutil.walk_packages(neurodeploy.__path__, "neurodeploy."):
        if info.name == "neurodeploy.__main__" or info.name.startswith(LAVA_PROCESSES):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional dependency (triton) missing here
            continue
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, Exception) and not issubclass(obj, Warning)
                    and obj.__module__ == info.name):
                found[f"{info.name}.{name}"] = obj
    return found


def test_every_exception_class_is_a_neurodeploy_error_with_a_documented_exit_code():
    classes = defined_exceptions()
    lava_src = "".join(p.read_text() for p in (ROOT / "neurodeploy" / "lava_src").glob("*.py"))
    assert not re.findall(r"^class \w+\((?:\w*Error|\w*Exception)\b", lava_src, re.M)
    assert len(classes) >= 15  # the package's own classes were found
    assert not [n for n, c in classes.items() if not issubclass(c, errors.NeurodeployError)]
    table = (ROOT / "docs" / "cli.md").read_text()
    documented = {int(code): cls for code, cls in re.findall(r"^\| (\d) \| `(\w+)` \|", table, re.M)}
    for code, cls in documented.items():
        assert getattr(errors, cls).exit_code == code
    for name, cls in classes.items():
        if cls is not errors.NeurodeployError:
            assert cls.exit_code in documented, name
            assert name.rsplit(".", 1)[1] in table, f"{name} is not listed in docs/cli.md"
