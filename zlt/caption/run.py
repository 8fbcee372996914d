"""`caption_folder`: caption the images of a dataset folder into `.txt` sidecars, with records and resume.

One pass: list the images (zlt.dataset.scan), decide per image (mode missing: only those without a sidecar; mode
all: every one, old text kept as NAME.txt.bak, and only with `overwrite`), reuse the model's earlier output for an
unchanged image (zlt.caption.records), decode the rest (an unreadable image is skipped and reported), caption them
in batches, and write each sidecar atomically with its record. The model is loaded only when some image needs it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from zlt.caption.images import read_ahead, read_image
from zlt.caption.models import CaptionerInfo, Loaded, captioner_info, device_for, load_captioner
from zlt.caption.records import RECORDS, RecordWriter, index, read_records, record_key
from zlt.caption.text import finish, prompt_for
from zlt.core.constants import DEFAULT_CAPTIONER
from zlt.core.errors import BadInputError
from zlt.core.fsutil import atomic_write_text
from zlt.dataset.captions import PLACEHOLDER, read_text_file
from zlt.dataset.scan import scan_dataset

Progress = Callable[[int, int], None]


@dataclass
class CaptionOptions:
    model: str = DEFAULT_CAPTIONER
    mode: Literal["missing", "all"] = "missing"
    overwrite: bool = False  # mode all: replace existing sidecars (each kept beside as NAME.txt.bak)
    preset: Literal["style", "character"] = "style"
    prefix: str = ""
    suffix: str = ""
    max_words: int | None = None
    subject: str = PLACEHOLDER  # the character form's name: the trigger placeholder unless the caller knows better
    caption_ext: str = "txt"
    batch_size: int | None = None  # default: the captioner's (GPU) or 4 (CPU)
    gpu: int | None = None


@dataclass
class Todo:
    rel: str
    sidecar: Path
    existing: str | None  # the sidecar's text, when it has one


@dataclass
class Plan:
    folder: Path
    info: CaptionerInfo
    prompt: str
    images: int
    todo: list[Todo]
    have_caption: int  # images left alone: they have a sidecar (mode missing)


@dataclass
class CaptionReport:
    folder: str
    model: str
    revision: str | None
    prompt: str
    preset: str
    mode: str
    images: int
    captioned: int = 0  # the model ran for these
    reused: int = 0  # an unchanged image's earlier output reused (no model call)
    unchanged: int = 0  # mode all: the sidecar already holds this run's caption
    have_caption: int = 0  # mode missing: left alone
    written: list[str] = field(default_factory=list)
    backups: list[str] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    records: str = ""
    seconds: float = 0.0
    model_seconds: float = 0.0  # time inside the model (load excluded)
    tiny: bool = False

    @property
    def images_per_s(self) -> float | None:
        return round(self.captioned / self.model_seconds, 3) if self.captioned and self.model_seconds else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s}


def sidecar_of(folder: Path, rel: str, ext: str) -> Path:
    stem = rel.rsplit(".", 1)[0]
    return folder / f"{stem}.{ext}"


def plan_folder(folder: Path, opts: CaptionOptions, field_name: str = "caption") -> Plan:
    """What a run would caption; BadInputError (exit 2) for a folder that cannot be captioned as asked."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise BadInputError(f"{field_name}.path: {folder} is not a folder", hint="give the folder of your images")
    info = captioner_info(opts.model, f"{field_name}.model")
    try:
        scan = scan_dataset(folder)
    except BadInputError as e:
        raise BadInputError(f"{field_name}.path: {e.message}", hint=e.hint) from None
    images = scan.images
    if not images:
        raise BadInputError(f"{field_name}.path: no images in {folder}", hint="add PNG, JPEG or WebP files")
    todo, have = [], 0
    for f in images:
        side = sidecar_of(scan.root, f.rel, opts.caption_ext)
        existing = read_text_file(side)[0] if side.is_file() else None
        if existing is not None and opts.mode == "missing":
            have += 1
            continue
        todo.append(Todo(f.rel, side, existing))
    clash = [t for t in todo if t.existing is not None]
    if clash and not opts.overwrite:
        raise BadInputError(
            f"{field_name}.mode: 'all' would replace {len(clash)} existing caption(s) (e.g. {clash[0].sidecar.name})",
            hint="add --overwrite (each old caption is kept beside it as NAME.txt.bak), or use --mode missing")
    return Plan(scan.root, info, prompt_for(info, opts.preset), len(images), todo, have)


def _batch_for(loaded: Loaded | None, info: CaptionerInfo, opts: CaptionOptions) -> int:
    """Images per generate call: the captioner's on a GPU, 4 on the CPU (asks torch only when an image needs it)."""
    device = loaded.device if loaded is not None else device_for(opts.gpu)
    return info.batch_size if device.startswith("cuda") else 4


def replace_text(path: Path, text: str) -> None:
    """Write a sidecar atomically: a temporary file beside it renamed over it, so a reader (or a crash) sees the
    old caption or the new one, never half of one. Not fsynced one by one: the batch's records are."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _backup(side: Path) -> Path:
    n, dest = 1, side.with_name(side.name + ".bak")
    while dest.exists():
        n += 1
        dest = side.with_name(f"{side.name}.bak{n}")
    atomic_write_text(dest, side.read_text(encoding="utf-8", errors="replace"))
    return dest


def caption_folder(folder: Path, opts: CaptionOptions, *, loaded: Loaded | None = None,
                   progress: Progress | None = None, should_stop: Callable[[], None] | None = None,
                   plan: Plan | None = None) -> CaptionReport:
    """Caption a folder as `opts` asks; returns what was done. `loaded`: a captioner already loaded (else loaded
    here, only if some image needs the model); `should_stop()` may raise to stop between batches."""
    t0 = time.monotonic()
    plan = plan or plan_folder(folder, opts)
    info, prompt = plan.info, plan.prompt
    rep = CaptionReport(str(plan.folder), info.name, None, prompt, opts.preset, opts.mode, plan.images,
                        have_caption=plan.have_caption, records=str(plan.folder / RECORDS), tiny=info.is_tiny)
    known = index(read_records(plan.folder))
    writer = RecordWriter(plan.folder)
    pending: list[tuple[Todo, str, Any]] = []  # (todo, sha256, RGB image) waiting for the model
    total = len(plan.todo)
    done = 0

    def tick() -> None:
        if progress is not None:
            progress(done, total)

    def write(todo: Todo, sha: str, raw: str, revision: str | None, reused: bool) -> None:
        nonlocal done
        fin = finish(raw, preset=opts.preset, prefix=opts.prefix, suffix=opts.suffix, max_words=opts.max_words,
                     subject=opts.subject)
        if todo.existing is not None and todo.existing.strip() == fin.caption:
            rep.unchanged += 1
        else:
            if todo.existing is not None:
                rep.backups.append(str(_backup(todo.sidecar)))
            replace_text(todo.sidecar, fin.caption + "\n")
            rep.written.append(todo.rel)
            writer.write({"key": record_key(sha, info.name, prompt), "file": todo.rel, "sha256": sha,
                          "model": info.name, "revision": revision, "prompt": prompt, "preset": opts.preset,
                          "raw": raw, "caption": fin.caption, "truncated": fin.truncated, "notes": fin.notes,
                          "reused": reused, "tiny": info.is_tiny})
            if reused:
                rep.reused += 1
        if fin.truncated:
            rep.truncated.append(todo.rel)
            rep.warnings.append(f"{todo.rel}: {fin.notes[-1]}")
        if not fin.caption:
            rep.warnings.append(f"{todo.rel}: the captioner wrote only style words ({raw!r}); its caption is empty")
        done += 1
        tick()

    def flush() -> None:
        nonlocal loaded
        if not pending:
            return
        if should_stop is not None:
            should_stop()
        if loaded is None:
            loaded = load_captioner(info.name, device=device_for(opts.gpu))
        rep.revision = loaded.revision
        t = time.monotonic()
        raws = loaded.caption([im for _, _, im in pending], prompt)
        rep.model_seconds += time.monotonic() - t
        rep.captioned += len(pending)
        for (todo, sha, _), raw in zip(pending, raws, strict=True):
            write(todo, sha, raw, loaded.revision, False)
        pending.clear()
        writer.flush()

    tick()
    batch = (opts.batch_size or _batch_for(loaded, info, opts)) if plan.todo else 1
    for todo, got in read_ahead(plan.todo, lambda t: read_image(plan.folder / t.rel), 2 * batch):
        if got.reason is not None:
            rep.unreadable.append({"file": todo.rel, "reason": got.reason, "detail": got.detail})
            done += 1
            tick()
            continue
        prior = known.get(record_key(got.sha256, info.name, prompt))
        if prior is not None and isinstance(prior.get("raw"), str):
            write(todo, got.sha256, prior["raw"], prior.get("revision"), True)
            continue
        pending.append((todo, got.sha256, got.image))
        if len(pending) >= batch:
            flush()
    flush()
    writer.flush(sync=True)
    if rep.unreadable:
        rep.warnings.append(f"{len(rep.unreadable)} image(s) skipped: cannot be read "
                            f"({', '.join(u['file'] for u in rep.unreadable[:3])})")
    if rep.revision is None and rep.reused:
        rep.revision = next((r.get("revision") for r in known.values() if r.get("model") == info.name), None)
    rep.seconds = round(time.monotonic() - t0, 3)
    rep.model_seconds = round(rep.model_seconds, 3)
    return rep
