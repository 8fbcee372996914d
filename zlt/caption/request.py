"""A caption request: what `zlt dataset caption`, `POST /v1/datasets/caption` and the MCP tool `caption_dataset`
send (one model, so the CLI flags, the HTTP body and the tool schema cannot drift apart)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from zlt.caption.run import CaptionOptions
from zlt.core.constants import DEFAULT_CAPTIONER, TINY_CAPTIONER


class CaptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=4096, description="Image folder (on a server: in a data root).")
    model: str = Field(DEFAULT_CAPTIONER, min_length=1, max_length=512,
                       description=f"Hub id, local folder, or '{TINY_CAPTIONER}' (tests).")
    mode: Literal["missing", "all"] = Field("missing", description="missing: images without a .txt; all: every image.")
    overwrite: bool = Field(False, description="mode all: replace captions (old kept as NAME.txt.bak).")
    preset: Literal["style", "character"] = Field(
        "style", description="style: content, no style words; character: 'a photo of [trigger], ...'.")
    prefix: str = Field("", max_length=200, description="Text before each caption.")
    suffix: str = Field("", max_length=200, description="Text after each caption.")
    max_words: int | None = Field(None, ge=1, le=300, description="Cut captions to N words.")

    def options(self, gpu: int | None = None) -> CaptionOptions:
        return CaptionOptions(model=self.model, mode=self.mode, overwrite=self.overwrite, preset=self.preset,
                              prefix=self.prefix, suffix=self.suffix, max_words=self.max_words, gpu=gpu)
