"""What every spec field becomes on each backend: the one mapping per backend that docs/parity.md is generated from
and that `zlt render --explain` prints. A test renders every backend with every leaf field changed and fails when a
backend's output neither changes nor warns, unless its entry says zlt itself carries the field out (before or
after the trainer runs, the same way on every backend)."""

from __future__ import annotations

from typing import Any

from zlt import backends
from zlt.backends.carried import COMMON, ZLT, Carried, leaf_fields
from zlt.caption.explain import caption_notes
from zlt.render.base import RenderResult
from zlt.spec.load import SOURCE_DEFAULT

__all__ = ["MAPS", "ZLT", "Carried", "explain_rows", "leaf_fields", "mapping", "maps", "parity_markdown"]


def maps() -> dict[str, dict[str, Carried]]:
    """Every backend's full table, by name."""
    return {b: mapping(b) for b in backends.names()}


def mapping(backend: str) -> dict[str, Carried]:
    """The full table of one backend: the fields zlt carries out itself, then the backend's own."""
    return {**COMMON, **backends.get(backend).parity()}


def _cell(c: Carried) -> str:
    text = c.where.replace("|", "\\|")
    return f"zlt: {text}" if c.kind == ZLT else text


def parity_markdown() -> str:
    """docs/parity.md, generated from MAPS (`python -m zlt.backends.parity > docs/parity.md`)."""
    names = backends.names()
    tables = {b: mapping(b) for b in names}
    lines = [
        "# Parity: what each spec field becomes on each backend",
        "",
        "Generated from `zlt/backends/parity.py` by `python -m zlt.backends.parity > docs/parity.md`; "
        "`tests/unit/test_parity.py` keeps this file equal to the generator's output and renders every backend "
        "with each field changed, failing when a backend's output neither changes nor warns. "
        "`zlt render SPEC --explain` prints the same mapping for one spec, with the values and the warnings.",
        "",
        "A cell is the rendered key, flag or code path; \"warned\" means the backend cannot do it and the render "
        "says so (a `warning` event and an `--explain` line). \"zlt: ...\" is done by zlt itself, the same way on "
        "every backend.",
        "",
        "| field | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for path in leaf_fields():
        lines.append(f"| `{path}` | " + " | ".join(_cell(tables[b][path]) for b in names) + " |")
    return "\n".join(lines) + "\n"


def explain_rows(loaded: Any, result: RenderResult) -> list[dict[str, Any]]:
    """One row per leaf field of a loaded spec: value, where it came from, what `result.backend` does with it and
    the render's warnings and notes about it."""
    values = loaded.spec.model_dump(mode="json")
    table = mapping(result.backend)
    rows = []
    for path in leaf_fields():
        node: Any = values
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        about = [m for m in result.warnings if path in m.fields]  # each says which fields where the render made it
        notes = [m for m in result.notes if path in m.fields]
        if path == "dataset.caption.auto.enable":  # which captions are (or will be) generated, and by what
            notes += caption_notes(loaded.spec)
        c = table[path]
        row = {"field": path, "value": node, "source": loaded.provenance.get(path, SOURCE_DEFAULT),
               "backend": result.backend, "carried_by": c.kind, "where": c.where, "warnings": about, "notes": notes}
        if path in AS_RENDERED:  # a value the spec resolves before any backend sees it: shown as it is rendered
            row["rendered"], none = AS_RENDERED[path][0](loaded.spec), AS_RENDERED[path][1]
            if row["rendered"] is None:
                row["where"] = none
        rows.append(row)
    return rows


# field -> (the value every backend renders, what a null rendering means)
AS_RENDERED: dict[str, tuple[Any, str]] = {
    "model.base.training_adapter": (lambda spec: spec.adapter_path(), "rendered null: no training adapter is merged"),
}


MAPS: dict[str, dict[str, Carried]] = maps()


if __name__ == "__main__":
    import sys

    sys.stdout.write(parity_markdown())
