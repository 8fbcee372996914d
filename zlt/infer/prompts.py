"""How long a prompt the model can read, checked before a generation is queued or run.

ZImagePipeline encodes `<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n` (19 tokens around the
prompt) and keeps at most `max_sequence_length` = 512 tokens; the transformer places those caption tokens, padded to
a multiple of 32, on the first axis of its rotary embedding, followed by the image, so they must fit in
`axes_lens[0] - 2` positions:

- Real Z-Image (`axes_lens[0]` 1024): all 512 tokens fit. A longer prompt is cut at 512 tokens by the pipeline
  (about 1,500-2,000 characters of English); zlt generates anyway and says so in `outputs.json` (`warnings`).
- The tiny test model (`axes_lens[0]` 256): 224 tokens. Its tokenizer is byte-level without merges, one token
  per UTF-8 byte, so its limit is exact without tokenizing: 205 bytes, the trigger token included. A longer
  prompt would crash its transformer (IndexError), so it is refused when the request is submitted (422, exit 2).
"""

from __future__ import annotations

from typing import Any

from zlt.core.constants import TINY_MODEL
from zlt.core.errors import BadInputError
from zlt.trainer.tiny import TRANSFORMER_CONFIG

SEQ_MULTI_OF = 32  # the transformer pads the caption to this many tokens
MAX_SEQUENCE_LENGTH = 512  # ZImagePipeline's default, which zlt keeps: the pipeline cuts longer prompts here
TEMPLATE_TOKENS = 19  # the chat template around the prompt (3 special tokens and 'user\n', '\n', 'assistant\n')


def caption_token_limit(first_axis_len: int) -> int:
    """Tokens (template included) a transformer with this `axes_lens[0]` can hold without running out of positions."""
    return min(MAX_SEQUENCE_LENGTH, (first_axis_len - 2) // SEQ_MULTI_OF * SEQ_MULTI_OF)


TINY_PROMPT_BYTES = caption_token_limit(TRANSFORMER_CONFIG["axes_lens"][0]) - TEMPLATE_TOKENS  # 205


Prompt = tuple[str, str, str]  # (request field, which one in words, the text as encoded: trigger included)


def check_prompt_bytes(prompts: list[Prompt], base_name: str) -> None:
    """Refuse a prompt the base model cannot hold, known before loading it: the tiny model's exact byte limit."""
    if base_name != TINY_MODEL:
        return  # real Z-Image: the pipeline cuts at 512 tokens; counted and reported when the tokenizer is loaded
    for field, label, prompt in prompts:
        n = len(prompt.encode("utf-8"))
        if n > TINY_PROMPT_BYTES:
            raise BadInputError(
                f"{field}: {label} is {n} bytes (UTF-8, the trigger token included); the tiny test model's text encoder reads "
                f"at most {TINY_PROMPT_BYTES}: the prompt is refused, not cut",
                hint=f"shorten it to {TINY_PROMPT_BYTES} bytes; real Z-Image models read 512 tokens "
                     "(a longer prompt is cut there, with a warning)")


def prompt_warnings(pipe: Any, prompts: list[Prompt]) -> list[str]:
    """With the pipeline loaded: its own tokenizer counts each prompt. Cut at 512 tokens by the pipeline -> a
    warning; more than its transformer holds even after that cut -> BadInputError (a model unlike Z-Image)."""
    tokenizer = getattr(pipe, "tokenizer", None)
    axes = getattr(getattr(getattr(pipe, "transformer", None), "config", None), "axes_lens", None)
    if tokenizer is None or not isinstance(axes, (list, tuple)) or not axes:
        return []
    limit = caption_token_limit(int(axes[0]))
    out = []
    for field, label, prompt in prompts:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True, enable_thinking=True)
        n = len(tokenizer(text).input_ids)
        if n <= limit:
            continue
        if limit < MAX_SEQUENCE_LENGTH:
            raise BadInputError(f"{field}: {label} is {n} tokens with the chat template; this model's text encoder reads at "
                                f"most {limit}: the prompt is refused, not cut", hint="shorten it")
        out.append(f"{field}: {label} is {n} tokens with the chat template; the text encoder read the first {limit}, the rest "
                   "was ignored")
    return out
