"""What goes into an auto-caption, by the kind of LoRA (the spec's preset).

- **style**: the caption describes the *content* (objects, scene, composition) and leaves out the style and medium,
  so the trigger token is what carries the style. A captioner that takes instructions (Qwen2.5-VL) is asked for
  that (STYLE_INSTRUCTION); one that only knows fixed tasks (Florence-2) gets its detailed-caption task, and every
  caption then passes the stated post-filter: the lead-in ("The image is a painting of"), "in the style of ...",
  "drawn in ..." and the words in STYLE_WORDS are removed.
- **character**: the guide's form, `a photo of [trigger], <what the picture shows>`: the placeholder becomes the
  spec's trigger token when the dataset is prepared (zlt.dataset.captions.apply_trigger).

Then the user's prefix and suffix, `max_words`, one line (a caption can never add a line or a field to a file it is
written into), and the text encoder's token limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from zlt.caption.models import CaptionerInfo
from zlt.dataset.captions import MAX_CAPTION_TOKENS, PLACEHOLDER, estimate_tokens, tidy

PRESETS = ("style", "character")
TRIGGER_ROOM = 12  # tokens kept free for the trigger token the prepare step adds
FLORENCE_TASKS = {"style": "<DETAILED_CAPTION>", "character": "<CAPTION>"}
STYLE_INSTRUCTION = ("Describe what this image shows in one or two sentences: the objects, the people, the scene and "
                     "the composition. Do not mention the art style, the medium, the technique or the colour palette.")
CHARACTER_INSTRUCTION = ("Describe in one sentence the person's pose, clothing and expression and the setting. "
                         "Do not name the person and do not mention the image's style or medium.")
# Style and medium words the post-filter removes (longest first, whole words, any case).
STYLE_WORDS = (
    "oil painting", "digital painting", "digital illustration", "digital art", "digital artwork", "concept art",
    "pixel art", "line art", "fan art", "3d render", "3d rendering", "watercolor painting", "watercolour painting",
    "art style", "brush strokes", "brushstrokes", "photorealistic", "hyperrealistic", "impressionist",
    "impressionism", "watercolor", "watercolour", "painting", "illustration", "drawing", "sketch", "artwork",
    "photograph", "photo", "rendering", "render", "anime", "manga", "cartoon", "comic", "stylized", "stylised",
    "painterly", "lithograph", "engraving", "woodcut", "vector art", "cel-shaded", "cel shaded",
)
_STYLE_ALT = "|".join(re.escape(w) for w in sorted(STYLE_WORDS, key=len, reverse=True))
_LEAD = re.compile(
    r"^\s*(?:in\s+)?(?:the|this)\s+(?:image|picture|photo|photograph|painting|illustration|artwork|drawing|scene|"
    r"artwork)\s*,?\s*(?:shows|is|depicts|features|captures|contains|presents|portrays|we see)?\s*", re.I)
_MEDIUM_OF = re.compile(rf"^(?:an?\s+)?(?:[\w-]+\s+){{0,3}}?(?:{_STYLE_ALT})\s+(?:of|showing|depicting)\s+", re.I)
_PHRASES = (
    re.compile(r"\bin\s+(?:the|a|an)\s+style\s+of\s+[^,.;]*", re.I),
    re.compile(r"\bin\s+(?:an?\s+)?[\w\s-]{0,30}?\bstyle\b", re.I),
    re.compile(r"\b(?:drawn|painted|rendered|done|created|made|depicted|illustrated)\s+(?:in|with|using)\s+[^,.;]*",
               re.I),
)
_WORDS = re.compile(rf"\b(?:{_STYLE_ALT})\b", re.I)
_DANGLING = re.compile(r"\b(?:a|an|the|of|in|with)\s*(?=[,.;]|$)", re.I)


@dataclass
class Finished:
    caption: str
    notes: list[str] = field(default_factory=list)
    truncated: bool = False
    filtered: bool = False  # the style post-filter removed something


def prompt_for(info: CaptionerInfo, preset: str) -> str:
    """The task token (Florence-2) or the instruction (Qwen2.5-VL) a captioner is given for a preset."""
    if info.takes_instructions:
        return CHARACTER_INSTRUCTION if preset == "character" else STYLE_INSTRUCTION
    return FLORENCE_TASKS.get(preset, FLORENCE_TASKS["style"])


def strip_style(text: str) -> str:
    """The stated post-filter: lead-in, medium phrases and style words out; content kept."""
    out = _LEAD.sub("", text)
    out = _MEDIUM_OF.sub("", out)
    for pattern in _PHRASES:
        out = pattern.sub("", out)
    out = _WORDS.sub("", out)
    out = _DANGLING.sub("", tidy(out))
    return tidy(out).strip(" .,;")


def _first_lower(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:1].isupper() and not text[1:2].isupper() else text


def finish(raw: str, *, preset: str = "style", prefix: str = "", suffix: str = "", max_words: int | None = None,
           subject: str = PLACEHOLDER, max_tokens: int = MAX_CAPTION_TOKENS) -> Finished:
    """The caption written to the sidecar for the model's raw output."""
    body = strip_style(" ".join(raw.split()))
    done = Finished("", filtered=body != tidy(" ".join(raw.split())).strip(" .,;"))
    if max_words is not None:
        words = body.split()
        if len(words) > max_words:
            body = " ".join(words[:max_words]).rstrip(" ,;:")
            done.notes.append(f"cut to {max_words} words (max_words)")
    if preset == "character":
        body = f"a photo of {subject}" + (f", {_first_lower(body)}" if body else "")
    text = " ".join(p for p in (prefix.strip(), body, suffix.strip()) if p)
    text = tidy(text)  # one line: no newline, tab or run of spaces survives
    budget = max_tokens - TRIGGER_ROOM
    if estimate_tokens(text) > budget:
        words = text.split()
        while words and estimate_tokens(" ".join(words)) > budget:
            words.pop()
        text = " ".join(words)
        done.truncated = True
        done.notes.append(f"longer than the text encoder reads ({max_tokens} tokens): truncated to "
                          f"{len(words)} words")
    done.caption = text
    return done
