"""What to do with a trained LoRA: the diffusers lines and the ComfyUI folder and node, printed after
`zlt train` succeeds (docs/use.md has the long form)."""

from __future__ import annotations

from pathlib import Path

BASE = "Tongyi-MAI/Z-Image-Turbo"


def usage_lines(artifact_path: str, artifact_id: str, *, trigger: str | None, key_format: str,
                base_model: str = BASE, tiny: bool = False, steps: int = 9, guidance: float = 0.0) -> list[str]:
    """A few copy-paste lines: load the LoRA in diffusers, put it where ComfyUI finds it. `steps`/`guidance`: how the
    base model samples (Turbo 9/0; the spec's training.sample settings for another variant)."""
    lora = Path(artifact_path) / "lora.safetensors"
    prompt = f"{trigger} a lighthouse on a cliff at dusk" if trigger else "a lighthouse on a cliff at dusk"
    lines = [
        "use it in diffusers:",
        "  import torch; from diffusers import ZImagePipeline",
        f"  pipe = ZImagePipeline.from_pretrained({base_model!r}, torch_dtype=torch.bfloat16).to('cuda')",
        f"  pipe.load_lora_weights({str(lora)!r}, adapter_name='style'); pipe.set_adapters(['style'], [1.0])",
        f"  pipe({prompt!r}, num_inference_steps={steps}, guidance_scale={float(guidance)!r}).images[0].save('out.png')",
    ]
    if key_format == "comfyui":
        lines.append(f"use it in ComfyUI: copy {lora} into ComfyUI/models/loras/, then load it with a "
                     "'LoraLoaderModelOnly' node after the model loader")
    else:
        lines.append(f"use it in ComfyUI: zlt artifacts export {artifact_id} --format comfyui -o ComfyUI/models/loras/ "
                     "then load it with a 'LoraLoaderModelOnly' node after the model loader")
    if tiny:
        lines.append("note: this LoRA was trained on the tiny test model zlt/tiny-zimage and fits only that model; "
                     f"train on {BASE} for a LoRA these lines can load")
    lines.append("more: docs/use.md")
    return lines
