"""Write docs/config.md, the configuration keys, from the pydantic models in
neurodeploy/config.py: every key with its type, default and allowed range from
the models, and its description from the comment next to the field.

    uv run python docs/config_keys.py        # rewrite docs/config.md
"""
from __future__ import annotations

import ast
import inspect
import sys
import typing
from pathlib import Path

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurodeploy import config  # noqa: E402

PAGE = Path(__file__).resolve().parent / "config.md"
HEADER = """# Configuration keys

A run's configuration is one YAML file (`examples/*.yaml`); every key below is
optional and takes the default shown. Unknown keys and ill-typed or out-of-range
values are refused before any work, naming the dotted key (`train.lr2: unknown
key`, exit code 2). A run writes the resolved configuration, every default filled
in, to `config.yaml` and `run.json`.

This page is generated from the models in `neurodeploy/config.py` by
`docs/config_keys.py`; a test fails when it is out of date.
"""


def field_comments(model: type) -> dict:
    """name -> the comment on a field's line, or the comment lines just above it."""
    lines, _ = inspect.getsourcelines(model)
    tree = ast.parse(inspect.cleandoc("".join(lines)) if lines[0].startswith(" ") else "".join(lines))
    out = {}
    for node in tree.body[0].body:
        if not isinstance(node, ast.AnnAssign):
            continue
        line = lines[node.lineno - 1]
        text = line.split("  # ", 1)[1].strip() if "  # " in line else ""
        k = node.lineno - 2
        above = []
        while k >= 0 and lines[k].strip().startswith("#"):
            above.insert(0, lines[k].strip().lstrip("#").strip())
            k -= 1
        out[node.target.id] = " ".join(above + ([text] if text else [])).replace("|", "\\|")
    return out


def type_name(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is typing.Union:
        kept = [type_name(a) for a in args if a is not type(None)]
        return " \\| ".join(kept) + " or null"
    if origin in (list, typing.List):
        return f"list of {type_name(args[0])}"
    return getattr(annotation, "__name__", str(annotation))


def bounds(info) -> str:
    parts = []
    for m in info.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                parts.append(f"{sym} {getattr(m, attr)}")
    return ", ".join(parts)


def default(info) -> str:
    if info.default_factory is not None:
        return f"`{info.default_factory()}`"
    if isinstance(info.default, BaseModel):
        return ""
    if info.is_required():
        return "required"
    value = info.default
    return f"`{'null' if value is None else str(value).lower() if isinstance(value, bool) else value}`"


def section(model: type, prefix: str) -> list:
    rows, nested = [], []
    comments = field_comments(model)
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested.append((annotation, f"{prefix}{name}."))
            continue
        inner = typing.get_args(annotation)
        if inner and isinstance(inner[0], type) and issubclass(inner[0], BaseModel):
            rows.append(f"| `{prefix}{name}` | list of `{prefix}{name}[]` entries | `[]` | | "
                        f"{comments.get(name, '')} |")
            nested.append((inner[0], f"{prefix}{name}[]."))
            continue
        rows.append(f"| `{prefix}{name}` | {type_name(annotation)} | {default(info)} | {bounds(info)} | "
                    f"{comments.get(name, '')} |")
    out = []
    if rows:
        title = prefix.rstrip(".") or "top level"
        doc = inspect.getdoc(model) if model.__doc__ and model is not config.RunConfig else ""
        out += [f"## `{title}`" if prefix else "## Top level", ""] + ([doc, ""] if doc else [])
        out += ["| key | type | default | range | meaning |", "|---|---|---|---|---|", *rows, ""]
    for sub, sub_prefix in nested:
        out += section(sub, sub_prefix)
    return out


def render() -> str:
    return "\n".join([HEADER] + section(config.RunConfig, ""))


if __name__ == "__main__":
    PAGE.write_text(render())
    print(f"wrote {PAGE}")
