"""LoRA files without torch: safetensors read/write (`safetensors_io`) and key-format conversion between
ai-toolkit/diffusers, musubi and ComfyUI layouts (`convert`). Used by the backends, the artifact registry,
generation and evaluation; imports only zlt.core."""
