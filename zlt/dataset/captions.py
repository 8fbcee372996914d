"""Captions: find one per image by the spec's strategy, read it safely, and insert the trigger token once.

Pure functions over text and the folder listing; the only I/O is reading caption and metadata files.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from zlt.dataset.report import CaptionInfo, Finding, finding
from zlt.dataset.scan import ScanResult
from zlt.spec.models import CaptionSpec

PLACEHOLDER = "[trigger]"
METADATA_NAMES = ("metadata.csv", "metadata.jsonl")
FILE_KEYS = ("filename", "file_name", "file", "image", "image_path", "path")
TEXT_KEYS = ("prompt", "caption", "text")
# Z-Image's text encoder reads 512 tokens, ~12 of which its chat template uses.
MAX_CAPTION_TOKENS = 500
# File-name captions that carry no meaning (camera and download defaults), after numbering is removed.
GENERIC_NAMES = frozenset({
    "img", "image", "dsc", "dscn", "dscf", "pxl", "photo", "picture", "pic", "screenshot", "untitled",
    "download", "mvimg", "gopr", "dji", "cimg", "imgp", "sam", "wp", "p", "scan", "file",
})
_NUMBERING = re.compile(r"(?:(?:^|\s+)\d+|\s*\(\d+\))+$")
_TOKEN_PIECES = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[A-Za-z]+|\d|[^\sA-Za-z\d]"
)
SHOT_WORDS: dict[str, tuple[str, ...]] = {
    "close_up": ("close-up", "closeup", "close up", "headshot", "head shot", "portrait of the face", "特写", "近景"),
    "medium": ("medium shot", "medium-shot", "upper body", "upper-body", "half body", "half-body", "waist up",
               "waist-up", "bust shot", "半身", "中景"),
    "full_body": ("full body", "full-body", "full shot", "whole body", "full length", "full-length", "全身", "远景"),
}


def read_text_file(path: Path) -> tuple[str, str | None]:
    """Text of a caption or metadata file and a note when it was not clean UTF-8.

    UTF-8 (with or without BOM) is read silently; UTF-16 with a BOM is decoded with a note; anything
    else is decoded as UTF-8 with U+FFFD replacements and a note naming the first bad byte.
    """
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "UTF-16 text; prepare writes it as UTF-8"
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as e:
        bad = data[e.start]
        return (
            data.decode("utf-8", errors="replace"),
            f"not valid UTF-8 (byte 0x{bad:02x} at offset {e.start}); decoded with U+FFFD replacement characters",
        )


def tidy(text: str) -> str:
    """Collapse whitespace (line breaks included) and the commas left by removing a word."""
    text = " ".join(text.split())
    text = re.sub(r"\s+,", ",", text)
    text = re.sub(r",(\s*,)+", ",", text)
    return text.strip(" ,")


def filename_caption(file_name: str) -> str:
    """`red_fox-in_snow_001.png` -> `red fox in snow`; `cat (2).jpg` -> `cat`."""
    stem = file_name.rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    text = " ".join(stem.replace("_", " ").replace("-", " ").split())
    return _NUMBERING.sub("", text).strip()


def is_generic(caption: str) -> bool:
    return not re.search(r"[^\W\d_]", caption) or caption.lower() in GENERIC_NAMES


def estimate_tokens(text: str) -> int:
    """Rough token count for Qwen's BPE: ~1 per short word, CJK character, digit or symbol."""
    total = 0
    for piece in _TOKEN_PIECES.findall(text):
        total += 1 + (len(piece) - 1) // 7 if piece.isascii() and piece.isalpha() else 1
    return total


def _token_pattern(token: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w])" + re.escape(token) + r"(?![\w])")


def apply_trigger(caption: str, token: str | None, position: str = "prefix") -> tuple[str, str]:
    """Insert the trigger token once; returns (final caption, how: present|placeholder|inserted|none).

    A `[trigger]` placeholder is honoured: the first becomes the token, any others are removed.
    """
    if not token:
        return (tidy(caption.replace(PLACEHOLDER, "")), "none") if PLACEHOLDER in caption else (caption, "none")
    if PLACEHOLDER in caption:
        head, tail = caption.split(PLACEHOLDER, 1)
        return tidy(head + token + tail.replace(PLACEHOLDER, "")), "placeholder"
    if _token_pattern(token).search(caption):
        return caption, "present"
    if not caption:
        return token, "inserted"
    return (f"{token}, {caption}" if position == "prefix" else f"{caption}, {token}"), "inserted"


def count_token(text: str, token: str) -> int:
    return len(_token_pattern(token).findall(text))


def shot_type(caption: str) -> str | None:
    low = caption.lower()
    for kind, words in SHOT_WORDS.items():
        if any(w in low for w in words):
            return kind
    return None


@dataclass
class CaptionPlan:
    """Captions for every image, plus what the report says about captions."""

    by_image: dict[str, CaptionInfo] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    metadata_file: str | None = None


def _index(images: list[str]) -> tuple[set[str], dict[str, list[str]]]:
    by_name: dict[str, list[str]] = {}
    for rel in images:
        by_name.setdefault(rel.rsplit("/", 1)[-1], []).append(rel)
    return set(images), by_name


def _parse_metadata(text: str, name: str, plan: CaptionPlan) -> list[tuple[int, str, str]]:
    """(line, image name, caption) rows of a metadata.csv / metadata.jsonl text."""
    rows: list[tuple[int, str, str]] = []
    if name.endswith(".jsonl"):
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                plan.findings.append(finding("metadata_row_invalid", f"line {lineno}: invalid JSON ({e.msg})", name))
                continue
            key = next((k for k in FILE_KEYS if isinstance(obj, dict) and isinstance(obj.get(k), str)), None)
            tkey = next((k for k in TEXT_KEYS if isinstance(obj, dict) and isinstance(obj.get(k), str)), None)
            if key is None or tkey is None:
                plan.findings.append(finding(
                    "metadata_row_invalid", f"line {lineno}: needs a 'filename' and a 'prompt' string", name))
                continue
            rows.append((lineno, obj[key], obj[tkey]))
        return rows
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    fcol = next((header.index(k) for k in FILE_KEYS if k in header), None)
    tcol = next((header.index(k) for k in TEXT_KEYS if k in header), None)
    if fcol is None or tcol is None:
        plan.findings.append(finding(
            "metadata_invalid", f"header {','.join(header)!r} lacks a filename and a prompt column", name,
            hint="make the first line 'filename,prompt' (file_name/image and caption/text also work)"))
        return rows
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(fcol, tcol):
            plan.findings.append(finding("metadata_row_invalid", f"line {reader.line_num}: too few columns", name))
            continue
        rows.append((reader.line_num, row[fcol], row[tcol]))
    return rows


def _metadata_captions(scan: ScanResult, images: list[str], plan: CaptionPlan) -> dict[str, tuple[str, str | None]]:
    present = [n for n in METADATA_NAMES if any(f.rel == n for f in scan.files)]
    if not present:
        plan.findings.append(finding(
            "metadata_missing", "caption.strategy is 'metadata' but the folder has no metadata.csv or metadata.jsonl",
            hint="add metadata.csv with a 'filename,prompt' header, or set dataset.caption.strategy: txt"))
        return {}
    name = present[0]
    plan.metadata_file = name
    if len(present) > 1:
        plan.findings.append(finding("caption_source_ignored", f"{present[1]} is ignored; {name} is used", present[1]))
    try:
        text, note = read_text_file(scan.root / name)
    except OSError as e:
        plan.findings.append(finding("unreadable", f"cannot read the metadata file ({e.strerror or e})", name))
        return {}
    if note:
        plan.findings.append(finding("caption_encoding", note, name, hint="re-save it as UTF-8"))
    rows = _parse_metadata(text, name, plan)
    if not rows and not any(f.code == "metadata_invalid" for f in plan.findings):
        plan.findings.append(finding("metadata_invalid", "no usable rows", name,
                                     hint="one row per image: filename,prompt"))
    exact, by_name = _index(images)
    out: dict[str, tuple[str, str | None]] = {}
    for lineno, raw_name, caption in rows:
        ref = raw_name.strip().replace("\\", "/").removeprefix("./")
        if ref not in exact and "/" not in ref and len(by_name.get(ref, [])) == 1:
            ref = by_name[ref][0]
        if ref not in exact:
            plan.orphans.append(f"{name}:{lineno}")
            plan.findings.append(finding(
                "caption_orphan", f"line {lineno} names {raw_name!r}, which is not an image in the folder", name))
            continue
        if ref in out:
            plan.findings.append(finding("metadata_duplicate", f"line {lineno} names {ref} again; ignored", name))
            continue
        out[ref] = (caption, name)
    return out


def _sidecar_captions(scan: ScanResult, images: list[str], ext: str, plan: CaptionPlan, read: bool) -> dict[str, str]:
    """Map image -> sidecar rel path; report orphans and shared sidecars (when `read`)."""
    caption_files = {f.rel.rsplit(".", 1)[0]: f.rel for f in scan.with_ext(ext)}
    stems: dict[str, list[str]] = {}
    for rel in images:
        stems.setdefault(rel.rsplit(".", 1)[0], []).append(rel)
    out: dict[str, str] = {}
    for stem, rels in stems.items():
        if stem in caption_files:
            for rel in rels:
                out[rel] = caption_files[stem]
            if read and len(rels) > 1:
                plan.findings.append(finding(
                    "caption_collision", f"{', '.join(rels)} share the caption {caption_files[stem]}", rels[1],
                    hint="rename one image (and give it its own caption)"))
    if read:
        for stem, rel in caption_files.items():
            if stem not in stems:
                plan.orphans.append(rel)
                plan.findings.append(finding("caption_orphan", "caption file with no image of the same name", rel))
    return out


def plan_captions(
    scan: ScanResult, images: list[str], spec: CaptionSpec, usable: set[str] | None = None
) -> CaptionPlan:
    """Find the caption of each usable image by `spec.strategy` and apply default caption and trigger.

    `images` are all image files (to match caption files to); captions are planned for `usable` ones.
    """
    plan = CaptionPlan()
    strategy = spec.strategy
    uses_sidecars = strategy in ("txt", "filename_or_txt")
    sidecars = _sidecar_captions(scan, images, spec.caption_ext, plan, read=uses_sidecars)
    metadata = _metadata_captions(scan, images, plan) if strategy == "metadata" else {}
    if not uses_sidecars and scan.with_ext(spec.caption_ext):
        n = len(scan.with_ext(spec.caption_ext))
        plan.findings.append(finding(
            "caption_source_ignored", f"{n} .{spec.caption_ext} caption file(s) are not read by strategy '{strategy}'",
            hint="set dataset.caption.strategy: filename_or_txt to use them"))
    if strategy != "metadata":
        for name in METADATA_NAMES:
            if any(f.rel == name for f in scan.files):
                plan.findings.append(finding(
                    "caption_source_ignored", f"{name} is not read by strategy '{strategy}'", name,
                    hint="set dataset.caption.strategy: metadata to use it"))

    for rel in images:
        if usable is not None and rel not in usable:
            continue
        info = CaptionInfo()
        if uses_sidecars and rel in sidecars:
            info.source, info.file = "sidecar", sidecars[rel]
            try:
                raw, note = read_text_file(scan.root / info.file)
            except OSError as e:
                plan.findings.append(finding("unreadable", f"cannot read the caption ({e.strerror or e})", info.file,
                                             hint="make it readable (chmod +r) or remove it"))
                raw, note, info.source = "", None, "none"
            if note:
                plan.findings.append(finding("caption_encoding", note, info.file, hint="re-save it as UTF-8"))
            info.text = tidy(raw)
        elif strategy == "metadata" and rel in metadata:
            raw, info.file = metadata[rel]
            info.source, info.text = "metadata", tidy(raw)
        elif strategy in ("filename", "filename_or_txt"):
            info.source, info.text = "filename", filename_caption(rel)
            if info.text and is_generic(info.text):
                plan.findings.append(finding(
                    "caption_generic", f"the file name gives the caption {info.text!r}", rel,
                    hint=f"rename the file to describe the image, or add {rel.rsplit('.', 1)[0]}.{spec.caption_ext}"))
        else:
            plan.findings.append(finding(
                "caption_missing", "no caption" + (f"; the default caption {spec.default_caption!r} is used"
                                                   if spec.default_caption else ""), rel,
                hint=f"add {rel.rsplit('.', 1)[0]}.{spec.caption_ext}" if strategy == "txt"
                else "add a row for it to the metadata file"))
        if info.source != "none" and not info.text:
            plan.findings.append(finding("caption_empty", f"the {info.source} caption is empty", info.file or rel))
        base = info.text
        if not base and spec.default_caption:
            base = tidy(spec.default_caption)
            if info.source == "none":
                info.source = "default"
        if PLACEHOLDER in base and not spec.trigger_token:
            plan.findings.append(finding(
                "trigger_placeholder_unused", "the caption has '[trigger]' but no trigger_token is set; it is removed",
                info.file or rel, hint="set dataset.caption.trigger_token"))
        info.final, info.trigger = apply_trigger(base, spec.trigger_token, spec.trigger_position)
        info.tokens = estimate_tokens(info.final)
        if spec.trigger_token and count_token(info.final, spec.trigger_token) > 1:
            plan.findings.append(finding(
                "trigger_repeated", f"{spec.trigger_token} appears {count_token(info.final, spec.trigger_token)} times",
                info.file or rel, hint="keep it once; it anchors the style"))
        if info.tokens > MAX_CAPTION_TOKENS:
            plan.findings.append(finding(
                "caption_long", f"about {info.tokens} tokens; the text encoder reads ~{MAX_CAPTION_TOKENS}, the rest is cut",
                info.file or rel, hint="shorten it to the essentials"))
        plan.by_image[rel] = info
    return plan


def caption_files(scan: ScanResult, spec: CaptionSpec) -> set[str]:
    """Files that count as captions (so they are not reported as stray non-image files)."""
    out = {f.rel for f in scan.with_ext(spec.caption_ext)}
    out.update(n for n in METADATA_NAMES if any(f.rel == n for f in scan.files))
    return out


