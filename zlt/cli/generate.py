"""`zlt generate` and `zlt transfer`: use a trained LoRA now, or as an async job with --submit (thin: zlt.infer works)."""

from __future__ import annotations

from pathlib import Path

import typer

from zlt.cli.common import HomeOpt, JsonOpt, command

ArtifactArg = typer.Argument(..., help="Artifact id (see 'zlt artifacts list'), its job id, a unique id prefix, a "
                             "style name (its current version), STYLE@vN, or 'latest' (the newest artifact); ID@STEP "
                             "or ID@best picks a checkpoint.")
ScaleOpt = typer.Option(None, "--scale", help="LoRA scale of ARTIFACT (0 = base model; default 1.0, or for ID@best "
                        "the scale its evaluation used).")
CheckpointOpt = typer.Option(None, "--checkpoint", help="Use ARTIFACT's kept checkpoint of this step, or 'best' (the "
                             "step its last evaluation picked), not the final weights.")
LoraOpt = typer.Option(None, "--lora", help="Stack another LoRA: ID, ID:SCALE or ID@STEP:SCALE (repeatable).")
SeedOpt = typer.Option(0, "--seed", help="Seed of the first image; image i uses seed + i.")
StepsOpt = typer.Option(None, "--steps", help="Denoising steps (default: the artifact's sampling steps; Z-Image-Turbo: 9).")
GuidanceOpt = typer.Option(None, "--guidance", help="Guidance scale (default: the artifact's; Z-Image-Turbo: 0).")
NoTriggerOpt = typer.Option(False, "--no-trigger", help="Do not put the artifact's trigger token in front of prompts.")
NegativeOpt = typer.Option(None, "--negative-prompt", help="Negative prompt (used when --guidance > 0).")
VramOpt = typer.Option(None, "--vram-gb", help="Plan for a GPU with this much memory; below 24 GB: model CPU offload.")
SubmitOpt = typer.Option(False, "--submit", help="Queue it as an async job and print the job id at once.")
PriorityOpt = typer.Option(0, "--priority", help="With --submit: queue priority -100..100.")
NoWorkerOpt = typer.Option(False, "--no-worker", help="With --submit: only queue; do not start a background worker.")


def _impl():
    from zlt.cli.impl import generate  # lazy: the request models pull pydantic, kept out of --help

    return generate


@command
def generate_cmd(
    artifact: str = ArtifactArg,
    prompt: list[str] = typer.Option(..., "--prompt", "-p", help="Prompt (repeatable); each makes --count images."),
    count: int = typer.Option(1, "--count", "-n", help="Images per prompt."),
    size: str | None = typer.Option(None, "--size", help="WIDTHxHEIGHT, multiples of 16 (default: the artifact's "
                                    "training resolution, square)."),
    scale: float | None = ScaleOpt,
    checkpoint: str = CheckpointOpt,
    lora: list[str] = LoraOpt,
    seed: int = SeedOpt,
    steps: int | None = StepsOpt,
    guidance: float | None = GuidanceOpt,
    no_trigger: bool = NoTriggerOpt,
    negative_prompt: str = NegativeOpt,
    vram_gb: float = VramOpt,
    submit: bool = SubmitOpt,
    priority: int = PriorityOpt,
    no_worker: bool = NoWorkerOpt,
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Text to image with a trained LoRA; PNGs (parameters embedded), outputs.json and a contact sheet are stored
    under the artifact's generations/ folder, whose path is printed."""
    impl = _impl()
    width, height = impl.parse_size(size) if size else (None, None)
    request = {
        "loras": impl.loras(artifact, scale, checkpoint, lora), "prompts": prompt, "count": count, "seed": seed,
        "steps": steps, "guidance": guidance, "width": width, "height": height, "trigger": not no_trigger,
        "negative_prompt": negative_prompt, "vram_gb": vram_gb,
    }
    impl.finish("generate", request, home, json_out, submit, priority, no_worker)


@command
def transfer_cmd(
    artifact: str = ArtifactArg,
    image: list[str] = typer.Option(..., "--image", "-i", help="Input image (repeatable): PNG, JPEG or WebP."),
    prompt: str = typer.Option("", "--prompt", "-p", help="Prompt for every image (the trigger token is added)."),
    strength: float = typer.Option(0.6, "--strength", help="0 returns the input, 1 ignores it."),
    count: int = typer.Option(1, "--count", "-n", help="Outputs per input image."),
    max_side: int | None = typer.Option(None, "--max-side", help="Scale inputs down to this longer side, aspect kept "
                                        "(default 2048, or the base model's limit: 512 on zlt/tiny-zimage)."),
    control: str = typer.Option(None, "--control", help="canny or depth: use a Z-Image ControlNet (needs --controlnet)."),
    controlnet: str = typer.Option(None, "--controlnet", help="Z-Image ControlNet: local folder/.safetensors, or a cached hub id."),
    control_image: list[str] = typer.Option(None, "--control-image", help="Control map per --image (required for depth)."),
    control_scale: float = typer.Option(0.75, "--control-scale", help="ControlNet conditioning scale."),
    scale: float | None = ScaleOpt,
    checkpoint: str = CheckpointOpt,
    lora: list[str] = LoraOpt,
    seed: int = SeedOpt,
    steps: int | None = StepsOpt,
    guidance: float | None = GuidanceOpt,
    no_trigger: bool = NoTriggerOpt,
    negative_prompt: str = NegativeOpt,
    vram_gb: float = VramOpt,
    submit: bool = SubmitOpt,
    priority: int = PriorityOpt,
    no_worker: bool = NoWorkerOpt,
    home: Path = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Style transfer of your images with a trained LoRA (img2img, or a ControlNet with --control), keeping each
    input's aspect; each side is snapped down to a multiple of 16 (96x72 is drawn at 96x64) and the output says
    so. Outputs go under the artifact's generations/ folder."""
    impl = _impl()
    request = {
        "loras": impl.loras(artifact, scale, checkpoint, lora), "images": [str(Path(p).expanduser().resolve()) for p in image],
        "prompt": prompt, "strength": strength, "count": count, "max_side": max_side, "control": control,
        "controlnet": controlnet, "control_images": [str(Path(p).expanduser().resolve()) for p in control_image or []] or None,
        "control_scale": control_scale, "seed": seed, "steps": steps, "guidance": guidance, "trigger": not no_trigger,
        "negative_prompt": negative_prompt, "vram_gb": vram_gb,
    }
    impl.finish("transfer", request, home, json_out, submit, priority, no_worker)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_cmd)
    app.command("transfer")(transfer_cmd)
