"""Auto-captioning: a vision-language model writes a `.txt` sidecar per image, before a dataset is prepared.

`caption_folder` (zlt.caption.run) is the one function the CLI (`zlt dataset caption`), a `caption` job and a training
job with `dataset.caption.auto` call. The captioners (zlt.caption.models) are a registry: a family (Florence-2,
Qwen2.5-VL) says how a model is loaded, prompted and decoded; `zlt/tiny-captioner` is a tiny random Florence-2 built
from a config (zlt.caption.tiny), so the whole path runs offline on a CPU. What goes into a caption for a style or a
character LoRA is zlt.caption.text; the resume records are zlt.caption.records.
"""

from __future__ import annotations

from zlt.caption.models import CaptionerInfo, captioner_info, known_captioners
from zlt.caption.run import CaptionOptions, CaptionReport, caption_folder, plan_folder

__all__ = ["CaptionOptions", "CaptionReport", "CaptionerInfo", "caption_folder", "captioner_info",
           "known_captioners", "plan_folder"]
