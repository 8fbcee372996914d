"""Load a spec from YAML/JSON (or a dict), apply the preset and `--set` overrides, validate, and record
where every value came from."""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from zlt.core.constants import TINY_MODEL
from zlt.core.errors import BadInputError, FieldError, SpecError
from zlt.spec.models import NAME_PATTERN, JobSpec
from zlt.spec.notes import tiny_leftovers, true_sources
from zlt.spec.presets import PRESETS
from zlt.spec.yaml_text import YamlTooLarge, load_yaml, parse_yaml, yaml_problem

SOURCE_SPEC = "spec"
SOURCE_SET = "--set"
SOURCE_DEFAULT = "default"
SOURCE_DERIVED = "derived"


@dataclass
class LoadedSpec:
    """A validated spec plus the provenance of each leaf value (`training.max_steps` -> 'preset:style')."""

    spec: JobSpec
    provenance: dict[str, str] = field(default_factory=dict)
    source: str = "<dict>"
    warnings: list[str] = field(default_factory=list)

    def resolved(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json")

    def explain(self) -> list[tuple[str, Any, str]]:
        """(path, value, source) for every leaf of the resolved spec."""
        rows = []
        for path, value in flatten(self.resolved()).items():
            rows.append((path, value, self.provenance.get(path, SOURCE_DEFAULT)))
        return rows


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf paths of nested dicts; lists are leaves."""
    out: dict[str, Any] = {}
    if isinstance(d, dict) and d:
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif prefix:
        out[prefix] = d
    return out


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_set(item: str) -> tuple[list[str], Any]:
    """`training.max_steps=3000` -> (['training', 'max_steps'], 3000); the value is read as YAML (bounded)."""
    if "=" not in item:
        raise BadInputError(f"--set {item!r}: expected KEY=VALUE", hint="e.g. --set training.max_steps=3000")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise BadInputError(f"--set {item!r}: bad key {key!r}", hint="use dotted field names like dataset.resolution")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except YamlTooLarge as e:
        raise BadInputError(f"--set {key}: {yaml_problem(e)}", hint="write the value out, without aliases") from None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_sets(data: dict[str, Any], sets: list[str]) -> tuple[dict[str, Any], list[str]]:
    data = copy.deepcopy(data)
    paths = []
    for item in sets:
        keys, value = parse_set(item)
        node = data
        for k in keys[:-1]:
            nxt = node.get(k)
            if not isinstance(nxt, dict):
                nxt = {}
                node[k] = nxt
            node = nxt
        node[keys[-1]] = value
        paths.extend(flatten(value, ".".join(keys)).keys() if isinstance(value, dict) else [".".join(keys)])
    return data, paths


def read_spec_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: spec file not found", hint="check the path, or run 'zlt init' to write one")
    if p.is_dir():
        raise BadInputError(f"{p}: is a folder, not a spec file", hint="pass the spec's .yaml or .json file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"{p}: cannot read spec ({e})", hint="save it as UTF-8 text") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError([FieldError("", f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")],
                            str(p)) from None
        except RecursionError:
            raise SpecError([FieldError("", "invalid JSON: nested too deeply")], str(p)) from None
    else:
        data = parse_yaml(text, str(p))  # aliases bounded before anything is built (zlt/spec/yaml_text.py)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError([FieldError("", "the spec must be a mapping of sections (model, dataset, ...)")], str(p))
    return data


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = JobSpec
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        f = getattr(model, "model_fields", {}).get(part)
        if f is None:
            return []
        model = f.annotation
    return list(getattr(model, "model_fields", {}).keys())


def _hint_for(err: dict[str, Any]) -> str:
    t = err["type"]
    loc = err["loc"]
    if t == "extra_forbidden":
        allowed = _allowed_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if close:
            return f"did you mean '{close[0]}'?"
        return f"remove it; allowed here: {', '.join(allowed)}" if allowed else "remove it"
    if t == "string_pattern_mismatch" and loc and loc[-1] == "name":
        return "lowercase letters, digits, '_' or '-', starting with a letter or digit, e.g. 'watercolor_v1'"
    if t == "literal_error":
        return "use one of the listed values"
    if t in ("int_parsing", "float_parsing", "int_from_float", "bool_parsing"):
        return "write a plain number or true/false"
    return ""


Checks = Callable[[dict[str, Any]], list[FieldError]]


def cross_checks(data: dict[str, Any], above: Checks | None = None) -> list[FieldError]:
    """Checks between fields, on the merged dict, so they are reported beside field errors. `above`: checks a layer
    above the spec makes (the backend registry's rules on training.backend), reported in their section's place."""
    errs: list[FieldError] = []

    def get(path: str, kind: type | tuple[type, ...] = (int, float)) -> Any:
        node: Any = data
        for k in path.split("."):
            if not isinstance(node, dict) or k not in node:
                return None
            node = node[k]
        if isinstance(node, bool) or not isinstance(node, kind):
            return None
        return node

    bs, ga, eff = get("training.batch_size", int), get("training.gradient_accumulation", int), get(
        "training.effective_batch_size", int
    )
    if bs and ga and eff is not None and eff != bs * ga:
        errs.append(FieldError(
            "training.effective_batch_size",
            f"{eff} != batch_size {bs} x gradient_accumulation {ga} = {bs * ga}",
            f"set it to {bs * ga} or remove it (it is derived)",
        ))
    warm, steps = get("training.warmup_steps", int), get("training.max_steps", int)
    # Cross-checks against max_steps only when max_steps itself is valid (its own error is reported already).
    steps = steps if steps is not None and steps >= 1 else None
    if warm is not None and steps is not None and warm >= steps:
        errs.append(FieldError(
            "training.warmup_steps", f"{warm} must be less than max_steps {steps}", f"use at most {max(steps - 1, 0)}"
        ))
    res = get("dataset.resolution", int)
    tiny = get("model.base.name", str) == TINY_MODEL
    if res is not None:
        low = 16 if tiny else 256
        if res % 16 != 0:
            errs.append(FieldError("dataset.resolution", f"{res} is not a multiple of 16", f"use {max(low, res // 16 * 16)}"))
        if not tiny and not 256 <= res <= 2048:
            errs.append(FieldError("dataset.resolution", f"{res} is outside 256..2048", "Z-Image trains at 512..1024"))
    if above is not None:
        errs.extend(above(data))
    every = get("output.save.every", int)
    if every is not None and steps is not None and every > steps:
        errs.append(FieldError(
            "output.save.every", f"{every} is more than max_steps {steps}: no intermediate checkpoint would be saved",
            f"use at most {steps}",
        ))
    ev_every = get("eval.every", int)
    if ev_every is not None and steps is not None and ev_every > steps:
        errs.append(FieldError(
            "eval.every", f"{ev_every} is more than max_steps {steps}: nothing would be evaluated while training",
            f"use at most {steps}, or null to evaluate only after training",
        ))
    return errs


def _default_name(data: dict[str, Any]) -> str | None:
    path = data.get("dataset", {}).get("path") if isinstance(data.get("dataset"), dict) else None
    if isinstance(path, str) and path:
        cand = re.sub(r"[^a-z0-9_-]+", "_", Path(path).name.lower()).strip("_-")[:64]
        if cand and re.fullmatch(NAME_PATTERN, cand):
            return cand
    return None


def _merge(user: dict[str, Any], sets: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The spec dict with `--set` and its preset applied (not validated), and where each leaf came from."""
    user, set_paths = apply_sets(user, sets)
    ev = user.get("eval")
    if isinstance(ev, dict) and isinstance(ev.get("early_stop"), bool):
        # `early_stop: true` is short for `{enable: true}`: expanded first, so --explain names the spec as its source
        user = {**user, "eval": {**ev, "early_stop": {"enable": ev["early_stop"]}}}
        set_paths = ["eval.early_stop.enable" if p == "eval.early_stop" else p for p in set_paths]
    preset_name = user.get("preset", "style")
    preset = PRESETS.get(preset_name, {}) if isinstance(preset_name, str) else {}
    merged = deep_merge(preset, user)
    provenance: dict[str, str] = {p: f"preset:{preset_name}" for p in flatten(preset)}
    provenance.update({p: SOURCE_SPEC for p in flatten(user)})
    provenance.update({p: SOURCE_SET for p in set_paths})
    _tiny_defaults(merged, user, provenance)
    _scaled_warmup(merged, preset, provenance)
    return merged, provenance


def _scaled_warmup(merged: dict[str, Any], preset: dict[str, Any], provenance: dict[str, str]) -> None:
    """A preset's warmup (style: 100 of 2000 steps) kept as its fraction of a shorter run the spec asks for, not an
    error: `training.max_steps: 40` gets warmup 2. A warmup the spec sets is judged as given."""
    tr, ptr = merged.get("training"), preset.get("training") or {}
    if not isinstance(tr, dict) or not str(provenance.get("training.warmup_steps", "")).startswith("preset:"):
        return
    warm, steps, psteps = tr.get("warmup_steps"), tr.get("max_steps"), ptr.get("max_steps")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (warm, steps, psteps)):
        return
    if 1 <= steps <= warm and psteps > 0:
        tr["warmup_steps"] = warm * steps // psteps
        provenance["training.warmup_steps"] = SOURCE_DERIVED


# What the tiny test model needs where the spec leaves it out (the presets are written for the real model): its
# source, and no GPU (the cpu profile), so `model.base.name: zlt/tiny-zimage` alone runs on a machine without one.
TINY_DEFAULTS: dict[str, Any] = {"model.base.source": "builtin", "job.resources.gpu": 0,
                                 "job.resources.min_vram_gb": None}


def _tiny_defaults(merged: dict[str, Any], user: dict[str, Any], provenance: dict[str, str]) -> None:
    model = merged.get("model")
    base = model.get("base") if isinstance(model, dict) else None
    if not isinstance(base, dict) or base.get("name") != TINY_MODEL:
        return
    given = flatten(user)
    for path, value in TINY_DEFAULTS.items():
        *parents, leaf = path.split(".")
        if path in given or any(".".join(parents[:i + 1]) in given for i in range(len(parents))):
            continue  # the spec set it (or set its section to something that is not a mapping)
        node = merged
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[leaf] = value
        provenance[path] = SOURCE_DERIVED


def merged_spec_data(user: dict[str, Any], sets: list[str] | None = None) -> dict[str, Any]:
    """The spec dict a spec and its overrides resolve to before validation (preset applied): what checks made above
    the spec layer (the backend registry's) read, so they judge the values load_spec_data validates."""
    return _merge(user, sets or [])[0]


def load_spec_data(
    user: dict[str, Any], *, sets: list[str] | None = None, source: str = "<dict>", base_dir: Path | None = None,
    checks: Checks | None = None,
) -> LoadedSpec:
    """Validate a spec dict; every problem is reported at once in one SpecError. `training.backend` is only checked to
    be a string here: the backend registry sits a layer above, and the gate (zlt/flows/gate.py) passes its rules as
    `checks`, run with the cross-checks."""
    merged, provenance = _merge(user, sets or [])

    if "name" not in merged:
        derived = _default_name(merged)
        if derived:
            merged["name"] = derived
            provenance["name"] = SOURCE_DERIVED

    ds = merged.get("dataset")
    if isinstance(ds, dict) and isinstance(ds.get("path"), str) and base_dir is not None:
        p = Path(ds["path"]).expanduser()
        ds["path"] = str(p if p.is_absolute() else (base_dir / p).resolve())
    elif isinstance(ds, dict) and "path" not in ds and base_dir is not None:
        ds["path"] = str((base_dir / "dataset").resolve())

    models = (merged.get("eval") or {}).get("models") if isinstance(merged.get("eval"), dict) else None
    if isinstance(models, dict) and isinstance(models.get("clip"), str) and base_dir is not None:
        # a folder beside the spec (a hub id such as openai/clip-vit-large-patch14 is not one): the worker that runs
        # the job has another working directory
        local = Path(models["clip"]).expanduser()
        if not local.is_absolute() and (base_dir / local).is_dir():
            models["clip"] = str((base_dir / local).resolve())

    errors: list[FieldError] = []
    spec = None
    try:
        spec = JobSpec.model_validate(merged)
    except ValidationError as e:
        for err in e.errors():
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            errors.append(FieldError(_loc_to_path(err["loc"]), msg, _hint_for(err)))
    errors.extend(cross_checks(merged, checks))
    if errors or spec is None:
        raise SpecError(errors, source)

    tr = spec.training
    if tr.effective_batch_size is None:
        tr.effective_batch_size = tr.batch_size * tr.gradient_accumulation
        provenance["training.effective_batch_size"] = SOURCE_DERIVED
    notes = tiny_leftovers(spec, provenance)  # what a tiny-model spec writes that the tiny model does not use
    true_sources(spec, provenance)  # a written-out value equal to the preset's or the default is theirs
    return LoadedSpec(spec=spec, provenance=provenance, source=source, warnings=notes)


def load_spec(path: str | Path, sets: list[str] | None = None) -> LoadedSpec:
    p = Path(path)
    data = read_spec_file(p)
    return load_spec_data(data, sets=sets, source=str(p), base_dir=p.resolve().parent)


def dump_spec_yaml(spec: JobSpec) -> str:
    """The resolved spec as YAML (what a job snapshots and an artifact keeps)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=1000)
