"""The one way an artifact reference becomes an indexed artifact (and, where it names one, a checkpoint step).

Every command, HTTP route and MCP tool that takes an artifact hands the reference to `resolve`. A reference is
`NAME` or `NAME@STEP` / `NAME@best`, where NAME is, in this order:
- a full artifact id (the folder name);
- `latest`: the newest artifact;
- `STYLE@vN`: version N of a style;
- a style name: its current version (the promoted one, else the newest);
- a job id: the artifact that job left;
- a unique id prefix.
`@STEP` picks the kept checkpoint of that step, `@best` the step the artifact's last evaluation scored best. A step
that is the final weights' step (and not also a kept checkpoint) resolves to the final weights: `step` None.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlt.artifacts import store
from zlt.artifacts.layout import LORA_FILE, META_FILE
from zlt.artifacts.promote import current_id
from zlt.core.errors import BadInputError, NotFoundError

LATEST = "latest"  # the newest artifact (what `make demo` generates from)
BEST = "best"  # the checkpoint the artifact's evaluation picked
AT_STEP = re.compile(r"^(?P<name>.+)@(?P<step>\d+|best)$", re.IGNORECASE)  # NAME@STEP, NAME@best
AT_VERSION = re.compile(r"^(?P<style>.+)@v(?P<version>\d+)$", re.IGNORECASE)  # STYLE@vN
FORMS = "an id, id prefix, job id, style name, STYLE@vN, or 'latest'"
MAX_LISTED = 8


@dataclass(frozen=True)
class Resolved:
    """What a reference names: the artifact's index row, and the checkpoint step (None: the final weights)."""

    row: dict[str, Any]
    step: int | None = None

    @property
    def id(self) -> str:
        return str(self.row["id"])

    @property
    def path(self) -> Path:
        return Path(self.row["path"])

    @property
    def name(self) -> str:
        return str(self.row["name"])


def split_ref(ref: str) -> tuple[str, str | None]:
    """'NAME@500' -> ('NAME', '500'); 'NAME@best' -> ('NAME', 'best'); 'STYLE@v2' -> ('STYLE@v2', None)."""
    m = AT_STEP.match(ref)
    return (m["name"], m["step"].lower()) if m else (ref, None)


def parse_step(step: str | int | None, *, field_name: str = "--step") -> int | str | None:
    """A step option: None, a step number, or 'best'."""
    if step is None or isinstance(step, int) and not isinstance(step, bool):
        if isinstance(step, int) and step < 0:
            raise BadInputError(f"{field_name} {step}: a step is 0 or more", hint="e.g. --step 750 or --step best")
        return step
    text = str(step).strip().lower()
    if text == BEST:
        return BEST
    if text.isdigit():
        return int(text)
    raise BadInputError(f"{field_name} {step!r}: not a step number or 'best'", hint="e.g. --step 750 or --step best")


def resolve(home: Path, ref: str, *, step: str | int | None = None, moving: bool = True) -> Resolved:
    """The artifact (and checkpoint step) `ref` names; `step` is a `--step` option given beside it (it must agree
    with an `@STEP` in `ref`). `moving=False` refuses the references whose answer changes over time (a style
    name, `latest`): what a deletion needs. NotFoundError / BadInputError saying what was tried."""
    home = Path(home)
    raw = (ref or "").strip()
    if not raw:
        raise BadInputError("artifact reference is empty", hint=f"give {FORMS} (see 'zlt artifacts list')")
    exact = _exact(home, raw)
    if exact is not None:
        return _with_step(exact, None, step)
    name, selector = split_ref(raw)
    return _with_step(_row(home, name, moving=moving), selector, step)


def resolve_row(home: Path, ref: str, *, moving: bool = True) -> dict[str, Any]:
    """The index row `ref` names (any `@STEP` is checked, then not needed)."""
    return resolve(home, ref, moving=moving).row


def resolve_id(home: Path, ref: str, *, moving: bool = True) -> str:
    return resolve(home, ref, moving=moving).id


def existing_folder(row: dict[str, Any]) -> Path:
    """The artifact's folder; NotFoundError when the index names a folder that is gone."""
    path = Path(row["path"])
    if not path.is_dir():
        raise NotFoundError(f"artifact '{row['id']}' is indexed but its folder {path} is gone",
                            hint=f"restore the folder, or drop the entry with 'zlt artifacts rm {row['id']} --yes'")
    return path


def best_step(row: dict[str, Any]) -> int:
    """The step the artifact's last evaluation scored best (index meta, else its training_meta.json)."""
    best = row["meta"].get("best_step")
    if best is None:
        try:
            doc = json.loads((Path(row["path"]) / META_FILE).read_text(encoding="utf-8"))
            best = ((doc.get("eval") or {}).get("best_step") if isinstance(doc, dict) else None)
        except (OSError, ValueError, AttributeError):
            best = None
    if isinstance(best, bool) or not isinstance(best, int):
        raise BadInputError(f"artifact '{row['id']}' has not been evaluated: there is no best step yet",
                            hint=f"run 'zlt eval {row['id']}' first, or give a step number")
    return best


def _with_step(row: dict[str, Any], selector: str | None, option: str | int | None) -> Resolved:
    at = parse_step(selector)
    opt = parse_step(option)
    if at is not None and opt is not None and at != opt:
        raise BadInputError(f"the reference selects step {at} and --step says {opt}",
                            hint="give the step once: NAME@STEP or --step STEP")
    want = at if at is not None else opt
    if want is None:
        return Resolved(row)
    value = best_step(row) if want == BEST else int(want)
    meta = row["meta"]
    if value == meta.get("final_step") and value not in (meta.get("checkpoint_steps") or []):
        return Resolved(row)  # the final weights' step: lora.safetensors
    return Resolved(row, value)


def _exact(home: Path, ref: str) -> dict[str, Any] | None:
    try:
        return store.resolve_exact(home, ref)
    except NotFoundError:
        return None


def _row(home: Path, name: str, *, moving: bool) -> dict[str, Any]:
    exact = _exact(home, name)  # the id part of ID@STEP
    if exact is not None:
        return exact
    if name == LATEST:
        if not moving:
            raise _moving_refused(name, "'latest'")
        rows = store.fetch_all(home)
        if not rows:
            raise NotFoundError("no artifact yet, so none is the latest", hint="train one first ('zlt train SPEC')")
        return rows[-1]
    at = AT_VERSION.match(name)
    if at:
        return _version(home, at["style"], int(at["version"]))
    line = store.fetch_style(home, name)
    if line:
        if not moving:
            raise _moving_refused(name, "a style name")
        cur = current_id(home, name) or line[-1]["id"]
        return next(r for r in line if r["id"] == cur)
    rows = store.fetch_by_job(home, name) or store.fetch_by_prefix(home, name)
    if len(rows) == 1:
        return rows[0]
    if rows:
        ids = ", ".join(r["id"] for r in rows[:MAX_LISTED]) + (", ..." if len(rows) > MAX_LISTED else "")
        raise BadInputError(f"artifact '{name}' is ambiguous: it matches {len(rows)} artifacts: {ids}",
                            hint="give more of the id, or the full id")
    raise NotFoundError(f"no artifact '{name}': not {FORMS}; known styles: {_styles(home)}",
                        hint="see 'zlt artifacts list' for the ids")


def _version(home: Path, style: str, version: int) -> dict[str, Any]:
    line = store.fetch_style(home, style)
    if not line:
        raise NotFoundError(f"no artifact '{style}@v{version}': no style '{style}'; known styles: {_styles(home)}",
                            hint="see 'zlt artifacts list' for the style names")
    row = next((r for r in line if r["version"] == version), None)
    if row is None:
        have = ", ".join(f"v{r['version']}" for r in line if r["version"] is not None)
        raise NotFoundError(f"style '{style}' has no version {version} (it has {have or 'none'})",
                            hint=f"see 'zlt artifacts list --style {style}'")
    return row


def _moving_refused(name: str, what: str) -> BadInputError:
    return BadInputError(f"'{name}' is {what}, whose artifact changes over time; this needs one fixed artifact",
                         hint="give the artifact id or STYLE@vN (see 'zlt artifacts list')")


def _styles(home: Path) -> str:
    names = sorted({r["name"] for r in store.fetch_all(home)})
    return ", ".join(names[:20]) + (", ..." if len(names) > 20 else "") if names else "none yet"


def resolve_folder(home: Path, ref: str) -> Path:
    """`zlt artifacts resolve`: the folder a reference names, or a folder path given as it is (an artifact folder
    that may not be indexed: it must hold lora.safetensors or training_meta.json)."""
    raw = (ref or "").strip()
    if raw and ("/" in raw or raw.startswith((".", "~"))):
        p = Path(raw).expanduser()
        if p.is_dir() and ((p / LORA_FILE).is_file() or (p / META_FILE).is_file()):
            return p.resolve()
        raise NotFoundError(f"{raw}: not an artifact folder (no {LORA_FILE} or {META_FILE})",
                            hint="give an artifact id or style name, or the folder a job left in the registry")
    return existing_folder(resolve_row(home, raw))
