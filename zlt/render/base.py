"""What every renderer takes and returns. Renderers are pure: spec x profile x context -> text and argv."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RenderContext:
    """Where things live when a job runs. Defaults give a self-contained render for `zlt render`."""

    dataset_dir: Path | None = None  # None: the spec's dataset.path
    output_dir: Path = Path("output")  # the trainer's own output folder
    config_dir: Path | None = None  # where rendered files are written; argv names them there
    job_id: str | None = None
    cache_dir: Path | None = None  # latent/text caches (musubi cache_directory, built-in trainer cache)
    trainer_root: Path | None = None  # ai-toolkit / musubi checkout
    python: str = "python"  # interpreter of the trainer's environment
    zlt_python: str = field(default_factory=lambda: sys.executable)  # runs zlt's own pre-steps (adapter conversion)
    log_path: Path | None = None  # ai-toolkit's -l FILE
    resume: bool = False  # a retry: continue from the latest checkpoint/state
    resume_from: Path | None = None  # musubi: the `-state` folder to pass to --resume
    resume_step: int = 0  # musubi restarts its counter at 0: train only the remaining steps
    models_dir: Path | None = None  # musubi's local weight files when the spec names none
    init_lora: Path | None = None  # `zlt retrain` warm start: LoRA weights to start from (the backend's key layout)

    def config_path(self, name: str) -> str:
        return str(self.config_dir / name) if self.config_dir else name


class FieldNote(str):
    """A render's warning or note, with the spec fields it is about, given where it is said. It is its text (a str):
    events, JSON and the console print it as before; `zlt render --explain` files it under `fields`."""

    fields: tuple[str, ...]

    def __new__(cls, text: str, fields: tuple[str, ...] = ()) -> FieldNote:
        note = super().__new__(cls, text)
        note.fields = fields
        return note

    def __reduce__(self) -> tuple[Any, ...]:
        return FieldNote, (str(self), self.fields)


def about(path: str, text: str) -> FieldNote:
    """`path: text`, about that one spec field."""
    return FieldNote(f"{path}: {text}", (path,))


def about_parts(group: str, names: list[str] | tuple[str, ...], text: str) -> FieldNote:
    """`group.a/b/c: text`, about the fields group.a, group.b and group.c."""
    return FieldNote(f"{group}.{'/'.join(names)}: {text}", tuple(f"{group}.{n}" for n in names))


@dataclass
class RenderResult:
    backend: str
    profile: str
    files: dict[str, str]
    argv: list[list[str]]
    cwd: str | None = None  # where argv must run (the trainer checkout), None: anywhere
    warnings: list[FieldNote] = field(default_factory=list)
    step_names: list[str] = field(default_factory=list)  # one per argv entry, e.g. cache_latents
    notes: list[FieldNote] = field(default_factory=list)  # how a spec field was resolved, for --explain (not warnings)
    # what this render makes the trainer do where it differs from or resolves the spec (alpha, modules, ...)
    trained: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "profile": self.profile, "files": self.files, "argv": self.argv,
                "notes": self.notes, "trained": self.trained}
