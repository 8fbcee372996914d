"""eval/contact_sheet.png (rows = checkpoints, base first; columns = prompt x seed) and eval/curves.png
(metrics and training loss against step)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABEL_W = 220  # left column: step and scores
HEADER_H = 28  # top row: prompt numbers and seeds


@dataclass(frozen=True)
class SheetGeometry:
    rows: int
    cols: int
    thumb: int

    @property
    def size(self) -> tuple[int, int]:
        return LABEL_W + self.cols * self.thumb, HEADER_H + self.rows * self.thumb


def thumb_size(image_size: int) -> int:
    return max(100, min(256, image_size))  # at least the height of the five caption lines


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap font size
        return ImageFont.load_default()


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "-"


def row_caption(row: dict[str, Any], best_step: int | None) -> list[str]:
    m = row.get("metrics") or {}
    title = "base (no LoRA)" if row.get("base") else f"step {row['step']}" + (" (final)" if row.get("final") else "")
    if best_step is not None and row.get("step") == best_step and not row.get("base"):
        title += "  * BEST"
    return [title, f"style  {_fmt(m.get('style_similarity'))}", f"align  {_fmt(m.get('prompt_alignment'))}",
            f"memo   {_fmt(m.get('memorisation'))}", f"divers {_fmt(m.get('diversity'))}"]


def contact_sheet(rows: list[dict[str, Any]], images: list[list[Any]], columns: list[str], out: Path,
                  best_step: int | None) -> SheetGeometry:
    """`images[r][c]`: PIL image of row r, column c. Written as PNG to `out`."""
    from PIL import Image, ImageDraw

    cols = len(columns)
    side = max((im.size[0] for r in images for im in r), default=64)
    geo = SheetGeometry(rows=len(rows), cols=cols, thumb=thumb_size(side))
    sheet = Image.new("RGB", geo.size, "white")
    draw = ImageDraw.Draw(sheet)
    small, big = _font(12), _font(14)
    for c, name in enumerate(columns):
        draw.text((LABEL_W + c * geo.thumb + 4, 8), name, fill="black", font=small)
    for r, (row, ims) in enumerate(zip(rows, images, strict=True)):
        y = HEADER_H + r * geo.thumb
        best = best_step is not None and row.get("step") == best_step and not row.get("base")
        if best:
            draw.rectangle([0, y, LABEL_W - 1, y + geo.thumb - 1], fill=(255, 240, 200))
        for i, line in enumerate(row_caption(row, best_step)):
            draw.text((8, y + 6 + i * 18), line, fill="black", font=big if i == 0 else small)
        for c, im in enumerate(ims):
            thumb = im.convert("RGB").resize((geo.thumb, geo.thumb), Image.Resampling.LANCZOS)
            sheet.paste(thumb, (LABEL_W + c * geo.thumb, y))
        draw.line([0, y, geo.size[0], y], fill=(180, 180, 180))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    return geo


CURVE_METRICS = (("style_similarity", "style similarity"), ("prompt_alignment", "prompt alignment"),
                 ("memorisation", "memorisation"), ("diversity", "diversity (CLIP distance)"))


def curves(rows: list[dict[str, Any]], loss: dict[str, Any] | None, out: Path, title: str,
           best_step: int | None) -> str | None:
    """Metrics against step, training loss on a second axis. Returns a note when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "eval/curves.png not drawn: matplotlib is missing (pip install 'zlt[plot]')"
    ordered = sorted(rows, key=lambda r: r["step"])
    steps = [r["step"] for r in ordered]
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    for key, label in CURVE_METRICS:
        pts = [(s, (r.get("metrics") or {}).get(key)) for s, r in zip(steps, ordered, strict=True)]
        pts = [(s, v) for s, v in pts if isinstance(v, (int, float))]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    if best_step is not None:
        ax.axvline(best_step, color="tab:red", linestyle="--", linewidth=1, label=f"best: step {best_step}")
    ax.set_xlabel("step (0 = base model, no LoRA)")
    ax.set_ylabel("score (CLIP cosine)")
    ax.grid(alpha=0.3)
    lines, labels = ax.get_legend_handles_labels()
    if loss and loss.get("steps") and loss.get("loss"):
        ax2 = ax.twinx()
        ax2.plot(loss["steps"], loss["loss"], color="gray", alpha=0.35, linewidth=0.8, label="training loss")
        ax2.set_ylabel("training loss")
        l2, lab2 = ax2.get_legend_handles_labels()
        lines, labels = lines + l2, labels + lab2
    ax.legend(lines, labels, loc="best", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    return None
