"""The one gate every spec passes before it becomes a job, a rendered config or an `ok`.

`admit(source, ...)`: resolve (preset, `--set`, `--backend`, retrain overrides, in any syntax) -> validate
(pydantic and cross-checks) -> fence every path-like field of the *resolved* spec against the caller's roots
(zlt/flows/fences.py; the local CLI has none) -> check the dataset folder. `zlt validate`, `zlt render`, `zlt submit`,
`zlt train`, `zlt retrain`, the HTTP routes and the MCP tools all call it, so they give one answer and one exit code:

- a spec error, an unknown backend, a fenced path, a missing or empty dataset folder: SpecError (exit 2, HTTP 422),
  one line per field, before any job exists;
- the machine (GPU, trainer checkout, disk): the preflight of the run itself (exit 3), on the host that runs it —
  `zlt train` here, the worker for a submitted job — because only that host can answer.

`render` previews a config before there is data: a spec that names no `dataset.path` renders against the
placeholder folder; a dataset folder the spec *names* must exist there too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from zlt import backends
from zlt.core.constants import TINY_MODEL
from zlt.core.errors import BadInputError, FieldError, SpecError
from zlt.dataset.listing import dataset_listing
from zlt.flows.fences import DATASET, Roots, fence_paths
from zlt.spec.load import LoadedSpec, apply_sets, load_spec_data, merged_spec_data, read_spec_file
from zlt.spec.models import TrainingSpec

Mode = Literal["validate", "render", "submit", "train"]
BACKEND_FIELD = backends.FIELD
LOCAL = Roots()


@dataclass
class Admitted:
    """A spec that passed the gate, and the dataset listing it was checked with (what submit snapshots)."""

    loaded: LoadedSpec
    listing: dict[str, Any] | None = None

    @property
    def spec(self) -> Any:
        return self.loaded.spec

    @property
    def warnings(self) -> list[str]:
        return self.loaded.warnings


def backend_error(name: Any) -> FieldError | None:
    """None for a backend the registry knows; else its one error (naming the field and the choices) as a field
    error, so it is reported beside the spec's other problems."""
    if isinstance(name, str) and name in backends.names():
        return None
    err = backends.unknown_backend(name)
    return FieldError(BACKEND_FIELD, err.message.removeprefix(f"{BACKEND_FIELD}: "), err.hint)


def _backend_name(merged: dict[str, Any]) -> Any:
    """`training.backend` of a spec dict (preset and overrides applied), the spec's default where it names none."""
    tr = merged.get("training")
    return tr["backend"] if isinstance(tr, dict) and "backend" in tr else TrainingSpec.model_fields["backend"].default


def tiny_model_errors(merged: dict[str, Any]) -> list[FieldError]:
    """The tiny test model trains only on a backend that `trains_tiny_model` (an unknown name is backend_error's)."""
    name = _backend_name(merged)
    model = merged.get("model")
    base = model.get("base") if isinstance(model, dict) else None
    if not isinstance(base, dict) or base.get("name") != TINY_MODEL or backend_error(name) is not None:
        return []
    if backends.get(name).trains_tiny_model:
        return []
    able = [n for n in backends.names() if backends.get(n).trains_tiny_model]
    return [FieldError(BACKEND_FIELD, f"'{name}' cannot train the tiny test model {TINY_MODEL}",
                       f"use backend {' or '.join(repr(b) for b in able)} or a real base model")]


def same_backend(a: str, b: str) -> bool:
    """Whether two names are the same trainer (a retrain that switches trainers cannot resume its parent's run)."""
    return backends.get(a) is backends.get(b)


def backend_sets(backend: str | None) -> list[str]:
    """`--backend X` as a spec override, so the spec's rules and the registry's (the tiny model trains only on a
    backend that `trains_tiny_model`) judge the combination that will run."""
    return [f"{BACKEND_FIELD}={backend}"] if backend else []


def _read(source: Path | str | dict[str, Any], label: str | None,
          base_dir: Path | None) -> tuple[dict[str, Any], str, Path | None]:
    if isinstance(source, dict):
        return copy.deepcopy(source), label or "<dict>", base_dir
    if isinstance(source, (str, Path)):
        p = Path(source)
        return read_spec_file(p), label or str(p), base_dir or p.resolve().parent
    raise SpecError([FieldError("", "the spec must be a JSON object with sections model, dataset, training, job, "
                                    "output")], label or "<dict>")


def _with_upload(data: dict[str, Any], dataset_dir: Path | None) -> tuple[dict[str, Any], list[str]]:
    """An uploaded dataset (the server's own extraction folder) replaces whatever path the spec named."""
    if dataset_dir is None:
        return data, []
    ds = data.get("dataset")
    ds = ds if isinstance(ds, dict) else {}
    warnings = [f"dataset.path {ds['path']!r} replaced by the uploaded dataset"] if ds.get("path") is not None else []
    data["dataset"] = {**ds, "path": str(dataset_dir)}
    return data, warnings


def _dedupe(errors: list[FieldError]) -> list[FieldError]:
    seen: set[tuple[str, str]] = set()
    out = []
    for e in errors:
        if (e.path, e.message) not in seen:
            seen.add((e.path, e.message))
            out.append(e)
    return out


def _validate(data: dict[str, Any], sets: list[str], roots: Roots, label: str, base_dir: Path | None,
              trusted: dict[str, Any] | None, skip: tuple[str, ...], also: list[FieldError] = ()) -> LoadedSpec:
    """load_spec_data with the registry's backend rules; a spec that fails reports its fenced paths with it (at once)."""
    raw, _ = apply_sets(data, sets)
    unknown = backend_error(_backend_name(merged_spec_data(data, sets)))
    try:
        loaded = load_spec_data(data, sets=sets, source=label, base_dir=base_dir, checks=tiny_model_errors)
    except SpecError as e:
        # an unknown name leads and stands for the spec's own error about the field (a name that is not a string)
        errors = [unknown, *(x for x in e.errors if x.path != BACKEND_FIELD)] if unknown else list(e.errors)
        errors += [*fence_paths(raw, roots, trusted=trusted, skip=skip)[1], *also]
        raise SpecError(_dedupe(errors), label) from None
    if unknown:
        raise SpecError([unknown], label)
    return loaded


def _set_path(spec: Any, path: str, value: str) -> None:
    *parents, leaf = path.split(".")
    node = spec
    for key in parents:
        node = getattr(node, key)
    setattr(node, leaf, value)


def _check_dataset(path: str, label: str) -> dict[str, Any]:
    """The dataset listing, or the error every door gives for an unusable folder (a SpecError naming the field)."""
    try:
        return dataset_listing(Path(path))
    except BadInputError as e:
        raise SpecError([FieldError(DATASET, e.message.removeprefix(f"{DATASET}: "), e.hint)], label) from None


def admit(source: Path | str | dict[str, Any], *, sets: list[str] | tuple[str, ...] = (), backend: str | None = None,
          roots: Roots = LOCAL, mode: Mode = "validate", base_dir: Path | None = None,
          dataset_dir: Path | None = None, trusted: dict[str, Any] | None = None,
          label: str | None = None) -> Admitted:
    """Resolve, validate and fence a spec (a spec file, or a client's dict) for `mode`; SpecError (exit 2, 422) with
    every problem, else the admitted spec.

    `roots`: the caller's fence (`Roots()`, the default, fences nothing: the local CLI). `dataset_dir`: an uploaded
    dataset folder (the server's own, not fenced). `trusted`: a resolved spec admitted before (a retrain's parent):
    its own path values pass unchanged; only what an override changes is fenced.
    """
    data, label, base_dir = _read(source, label, base_dir)
    if roots.fenced and isinstance(source, dict):
        base_dir = None  # a client's relative paths are relative to the server's roots (the fence), not its cwd
    data, warnings = _with_upload(data, dataset_dir)
    named = dataset_dir is not None or _names_dataset(data, sets)
    skip = (DATASET,) if dataset_dir is not None or not named else ()
    all_sets = [*sets, *backend_sets(backend)]
    errors: list[FieldError] = []
    if not named and roots.data is not None and mode != "render":
        errors.append(FieldError(DATASET, "required: name a folder on the server or upload a zip",
                                 "set dataset.path to a folder inside a data root, or send multipart with a "
                                 "'dataset' zip"))
    loaded = _validate(data, all_sets, roots, label, base_dir, trusted, skip, errors)
    loaded.warnings = warnings + loaded.warnings
    changes, fenced = fence_paths(loaded.resolved(), roots, trusted=trusted, skip=skip)
    errors += fenced
    if errors:
        raise SpecError(errors, label)
    for path, value in changes.items():
        _set_path(loaded.spec, path, value)
    listing = None
    # An upload not extracted yet (the server checks a spec before it unpacks the zip) is checked on the submit.
    upload_pending = dataset_dir is not None and not Path(dataset_dir).exists()
    if (named or mode != "render") and not upload_pending:
        listing = _check_dataset(loaded.spec.dataset.path, label)
    return Admitted(loaded=loaded, listing=listing)


def _names_dataset(data: dict[str, Any], sets: list[str] | tuple[str, ...]) -> bool:
    """Whether the spec or an override names `dataset.path` (else it is the default folder beside the spec)."""
    raw, _ = apply_sets(data, list(sets))
    ds = raw.get("dataset")
    return isinstance(ds, dict) and ds.get("path") is not None


def load_checked(path: Path, sets: list[str] | tuple[str, ...] = ()) -> LoadedSpec:
    """A spec file validated with the registry's backend rules, neither fenced nor its dataset checked: what
    `zlt preflight` reads (the dataset is one of its own checks, reported beside the others)."""
    data, label, base_dir = _read(path, None, None)
    return _validate(data, list(sets), LOCAL, label, base_dir, None, ())


def with_backend(loaded: LoadedSpec, backend: str | None) -> LoadedSpec:
    """A spec that already passed the gate, with `--backend` applied (the caller's choice wins; its cross-checks
    apply). The spec's paths are the ones the gate admitted."""
    if backend is None:
        return loaded
    return _validate(loaded.resolved(), backend_sets(backend), LOCAL, loaded.source, None, None, ())
