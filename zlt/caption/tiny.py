"""`zlt/tiny-captioner`: a tiny Florence-2 with random weights, built from a config (no download, no file).

It is the real `Florence2ForConditionalGeneration` and `Florence2Processor` of `transformers`, at a toy size, with a
word-level tokenizer over a small vocabulary of real English words. Its captions are what the random model really
decodes (greedy, over that vocabulary; the model's own generation config asks for at least a few words and no word
twice), so they are readable words that carry no meaning: they prove the path (batching, prompts, filters, sidecars,
records, jobs), never the quality. The same seed gives the same weights, so the same image gives the same caption.
"""

from __future__ import annotations

from typing import Any

SEED = 1234
IMAGE_SIDE = 32  # the processor resizes every image to this; the vision tower leaves 2 features per image
SPECIAL = ("<pad>", "<s>", "</s>", "<unk>", "<image>")
WORDS = tuple((
    "a an the of in on with and near under beside behind above two three small large tall old young "
    "red blue green yellow white black brown golden dark bright house tree lake river mountain hill cat dog "
    "horse bird woman man child girl boy boat bridge road path sky cloud field flower garden city street "
    "window door table chair car train sun moon light shadow forest beach wave rock stone wall roof tower "
    "cup book lamp bench fence sitting standing walking holding looking foreground background center left "
    "right view scene"
).split())
REVISION = f"tiny-florence2-seed{SEED}-v{len(WORDS)}"


def build_tiny(device: Any = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """(model, processor) of the tiny captioner, deterministic: the same weights on every call."""
    import torch  # lazy: pulls torch
    from tokenizers import Tokenizer, models, pre_tokenizers  # lazy: pulls tokenizers
    from transformers import (  # lazy: pulls transformers
        BartConfig,
        CLIPImageProcessorPil,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        GenerationConfig,
        PreTrainedTokenizerFast,
    )

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    images = CLIPImageProcessorPil(size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}, do_center_crop=False,
                                crop_size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}, image_seq_length=2)
    processor = Florence2Processor(image_processor=images, tokenizer=tok)
    ids = {t: vocab[t] for t in SPECIAL}
    text = BartConfig(vocab_size=len(vocab), d_model=32, encoder_layers=1, decoder_layers=1,
                      encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                      max_position_embeddings=128, pad_token_id=ids["<pad>"], bos_token_id=ids["<s>"],
                      eos_token_id=ids["</s>"], decoder_start_token_id=ids["</s>"], forced_eos_token_id=ids["</s>"],
                      init_std=0.5)
    vision = {"depths": [1, 1, 1, 1], "embed_dim": [8, 16, 32, 32], "num_heads": [1, 1, 2, 2],
              "num_groups": [1, 1, 2, 2], "window_size": 2, "projection_dim": 32, "drop_path_rate": 0.0,
              "initializer_range": 0.5}
    config = Florence2Config(text_config=text, vision_config=vision, image_token_id=ids["<image>"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Florence2ForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        max_new_tokens=12, min_new_tokens=5, no_repeat_ngram_size=1, num_beams=1, do_sample=False,
        suppress_tokens=[ids["<pad>"], ids["<s>"], ids["<unk>"], ids["<image>"]], bos_token_id=ids["<s>"],
        eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"], decoder_start_token_id=ids["</s>"])
    model.eval().to(device=device, dtype=dtype or torch.float32)
    return model, processor
