"""The dataset report: findings (error / warning / info) per file and in total, and its text form.

Every finding code is listed in `CODES` with its severity, so an agent can act on the code alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")

# code -> (severity, what it means). Errors block training, except an image that cannot be read (SKIPPABLE): prepare
# skips it and training goes on with the rest, unless `dataset.strict: true`. Prepare skips or fixes the warnings.
CODES: dict[str, tuple[Severity, str]] = {
    "zero_byte": ("error", "the image file is empty"),
    "corrupt": ("error", "Pillow cannot verify or decode the image"),
    "truncated": ("error", "the image data ends early"),
    "decompression_bomb": ("error", "the pixel count is above the cap; never decoded"),
    "unreadable": ("error", "a file or folder cannot be read (permissions)"),
    "no_usable_images": ("error", "no image in the folder can be used"),
    "metadata_missing": ("error", "caption.strategy is 'metadata' but there is no metadata.csv / metadata.jsonl"),
    "metadata_invalid": ("error", "the metadata file cannot be parsed"),
    "unsupported_format": ("warning", "an image format trainers do not read; skipped"),
    "extension_mismatch": ("warning", "the file's content is another format than its extension says"),
    "animated": ("warning", "an animated image; only the first frame is used"),
    "decoder_warning": ("warning", "Pillow warned while decoding (e.g. corrupt EXIF)"),
    "symlink_outside": ("warning", "a symlink leaves the dataset folder; not followed"),
    "symlink_broken": ("warning", "a symlink points nowhere"),
    "below_resolution": ("warning", "the longest side is below the training resolution"),
    "alpha_channel": ("warning", "transparent pixels; prepare composites them on white"),
    "needs_conversion": ("warning", "CMYK or 16-bit pixels; prepare converts them to 8-bit RGB"),
    "caption_missing": ("warning", "no caption for the image"),
    "caption_empty": ("warning", "the caption is empty"),
    "caption_long": ("warning", "the caption is longer than the text encoder reads"),
    "caption_encoding": ("warning", "the caption file is not UTF-8; decoded with replacements"),
    "caption_orphan": ("warning", "a caption names no image"),
    "caption_generic": ("warning", "a file-name caption that says nothing (IMG_1234, 0001)"),
    "caption_collision": ("warning", "two images share one sidecar caption (same stem)"),
    "metadata_row_invalid": ("warning", "a metadata line or row was skipped"),
    "metadata_duplicate": ("warning", "the metadata names an image twice; the first entry wins"),
    "trigger_repeated": ("warning", "the trigger token appears more than once in a caption"),
    "trigger_placeholder_unused": ("warning", "a caption has '[trigger]' but no trigger_token is set"),
    "duplicate_exact": ("warning", "byte-identical to another image; prepare drops it"),
    "duplicate_near": ("warning", "looks the same as another image (perceptual hash); prepare drops it"),
    "count_low": ("warning", "fewer images than the preset advises"),
    "count_high": ("warning", "more images than the preset advises"),
    "shot_mix": ("warning", "the close-up / medium / full-body mix is off the guide's advice"),
    "exif_rotated": ("info", "EXIF orientation; prepare rotates the pixels"),
    "alpha_opaque": ("info", "an alpha channel with no transparent pixel; prepare drops it"),
    "grayscale_or_palette": ("info", "grayscale or palette image; prepare converts it to RGB"),
    "high_bit_depth": ("info", "16 bits per channel; prepare stores 8-bit"),
    "trigger_missing": ("info", "captions without the trigger token; prepare inserts it"),
    "caption_source_ignored": ("info", "caption files the chosen strategy does not read"),
    "non_image_files": ("info", "files that are neither images nor captions; ignored"),
    "hidden_skipped": ("info", "hidden files and trainer caches; not scanned"),
    "count_ok": ("info", "the image count is within the preset's advice"),
    "shot_mix_unknown": ("info", "captions do not say close-up / medium / full body"),
}
# The errors of one image file that prepare skips (an unreadable caption or metadata file is not one of them).
SKIPPABLE = frozenset({"zero_byte", "corrupt", "truncated", "decompression_bomb", "unreadable"})


@dataclass
class Finding:
    severity: Severity
    code: str
    message: str
    file: str | None = None  # relative to the dataset folder
    hint: str = ""
    skipped: bool = False  # an image prepare skips: training goes on without it (unless dataset.strict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def finding(code: str, message: str, file: str | None = None, hint: str = "", *, skipped: bool = False) -> Finding:
    """A finding with the severity its code always has; `skipped`: an image file prepare leaves out."""
    return Finding(severity=CODES[code][0], code=code, message=message, file=file, hint=hint, skipped=skipped)


@dataclass
class CaptionInfo:
    text: str = ""  # the caption as found (whitespace collapsed)
    source: str = "none"  # sidecar | filename | metadata | default | none
    file: str | None = None  # caption file (sidecar or metadata) it came from
    final: str = ""  # what prepare writes: default caption and trigger applied
    trigger: str = "none"  # present | placeholder | inserted | none (no trigger configured)
    tokens: int = 0  # estimated text-encoder tokens of `final`


@dataclass
class ImageRecord:
    file: str
    bytes: int
    status: str = "ok"  # ok | error | duplicate | near_duplicate
    sha256: str = ""
    format: str | None = None
    width: int = 0
    height: int = 0
    mode: str | None = None
    bit_depth: int = 8
    exif_orientation: int = 1
    has_alpha: bool = False
    alpha_used: bool = False
    frames: int = 1
    phash: str | None = None
    caption: CaptionInfo = field(default_factory=CaptionInfo)
    duplicate_of: str | None = None
    codes: list[str] = field(default_factory=list)  # codes of the findings about this image

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DatasetReport:
    path: str
    settings: dict[str, Any]
    images: list[ImageRecord]
    findings: list[Finding]
    totals: dict[str, Any]
    strict: bool = False  # dataset.strict: an image that cannot be read blocks training instead of being skipped

    def blocking(self) -> list[Finding]:
        """The errors that stop training: all of them under dataset.strict, else those prepare cannot skip."""
        return [f for f in self.findings if f.severity == "error" and (self.strict or not f.skipped)]

    def skipped_files(self) -> list[str]:
        """The images that cannot be read: prepare skips them (dataset.strict refuses them instead)."""
        return [f.file for f in self.findings if f.skipped and f.file]

    @property
    def has_errors(self) -> bool:
        return bool(self.blocking())

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.has_errors,
            "path": self.path,
            "strict": self.strict,
            "skipped": self.skipped_files(),
            "settings": self.settings,
            "counts": {s: self.count(s) for s in SEVERITIES},
            "totals": self.totals,
            "findings": [f.to_dict() for f in self.findings],
            "images": [r.to_dict() for r in self.images],
        }


def _range(stat: dict[str, Any] | None) -> str:
    if not stat:
        return "-"
    return str(stat["min"]) if stat["min"] == stat["max"] else f"{stat['min']}..{stat['max']}"


def render_text(report: DatasetReport, *, per_image: bool = False) -> list[str]:
    """Lines a person reads: a summary, the findings by severity, and optionally one line per image."""
    t = report.totals
    s = report.settings
    cap = t["captions"]
    dup = t["duplicates"]
    lines = [
        f"dataset {report.path}",
        f"  images: {t['images_found']} found, {t['images_usable']} usable, {t['images_unique']} unique"
        f" ({t['bytes_total'] / 1e6:.1f} MB); formats: "
        + (", ".join(f"{k} {v}" for k, v in t["formats"].items()) or "-"),
        f"  size: shortest side {_range(t['shortest_side'])} px, longest side {_range(t['longest_side'])} px;"
        f" {t['below_resolution']} below the training resolution {s['resolution']}",
        f"  pixels: {t['exif_rotated']} EXIF-rotated, {t['alpha']} with alpha, {t['needs_conversion']} CMYK/16-bit",
        f"  captions ({s['caption_strategy']}): "
        + ", ".join(f"{k} {v}" for k, v in cap["by_source"].items() if v)
        + f"; {cap['missing']} missing, {cap['empty']} empty, {cap['long']} long, {cap['orphans']} orphan",
        f"  trigger {s['trigger_token']!s}: {cap['trigger_present']} present, {cap['trigger_placeholder']} via"
        f" [trigger], {cap['trigger_to_insert']} to insert" if s["trigger_token"] else "  trigger: none configured",
        f"  duplicates: {dup['exact_files']} exact, {dup['near_files']} near",
        f"  preset {s['preset']}: advises {t['advice']['min']}-{t['advice']['max']} images, has {t['images_unique']}"
        f" ({t['advice']['status']})",
    ]
    for sev in SEVERITIES:
        items = [f for f in report.findings if f.severity == sev]
        if not items:
            continue
        skipped = sum(1 for f in items if f.skipped)
        header = f"{sev}s ({len(items)}" if sev != "info" else f"info ({len(items)}"
        if skipped and not report.strict:
            header += f"; prepare skips {'the' if skipped == len(items) else skipped} unreadable image(s)"
        lines.append(header + "):")
        for f in items:
            where = f"{f.file}: " if f.file else ""
            lines.append(f"  {f.code:<22} {where}{f.message}")
            if f.hint:
                lines.append(f"  {'':<22} hint: {f.hint}")
    if per_image:
        lines.append("images:")
        for r in report.images:
            size = f"{r.width}x{r.height}" if r.width else "-"
            flags = ",".join(r.codes) or "-"
            lines.append(f"  {r.status:<14} {size:>11} {r.mode or '-':<5} {r.caption.source:<8} {r.file}  [{flags}]")
    lines.append(_verdict(report) + f" ({report.count('warning')} warnings, {report.count('info')} info)")
    return lines


def _verdict(report: DatasetReport) -> str:
    skipped = report.skipped_files()
    blocking = report.blocking()
    if blocking and report.strict and skipped:
        return (f"result: {len(blocking)} error(s) block training (dataset.strict: true refuses the "
                f"{len(skipped)} unreadable image(s); fix or remove them, or set dataset.strict: false to skip them)")
    if blocking:
        return f"result: {len(blocking)} error(s) block training"
    if skipped:
        usable = report.totals.get("images_usable", "?")
        return (f"result: ready to train on {usable} image(s); prepare skips {len(skipped)} unreadable image(s),"
                " dataset.strict: true refuses them instead")
    return "result: ready to train"
