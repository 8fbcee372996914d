"""The turbo training adapter, merged into the base weights for training speed but switchable for samples.

ai-toolkit switches the training adapter off while it draws samples: with it on, previews show the de-distilled
model the adapter makes (what training fights), not the turbo model a user will run the LoRA on. Merging keeps
every training step as cheap as the plain model; for the few sampling passes, `MergedAdapter.off()` hooks each
merged layer and subtracts the adapter's own output, scale * B(A(x)), so the layer computes W x again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class MergedAdapter:
    """Per merged layer (module name as before peft wraps it): the adapter's (A, B, scale), kept on the CPU."""

    factors: dict[str, tuple[Any, Any, float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.factors)

    @contextmanager
    def off(self, transformer) -> Iterator[int]:
        """Within the block the transformer computes as if the adapter had never been merged."""
        import torch

        modules = dict(transformer.named_modules())
        handles = []
        try:
            for name, (a, b, scale) in self.factors.items():
                layer = modules[name]
                if hasattr(layer, "get_base_layer"):  # our own LoRA wraps it now: hook the merged Linear inside
                    layer = layer.get_base_layer()
                cache: dict[Any, tuple[Any, Any]] = {}

                def hook(_mod, args, out, a=a, b=b, scale=scale, cache=cache):
                    x = args[0]
                    key = (x.device, x.dtype)
                    if key not in cache:
                        cache[key] = (a.to(x.device, x.dtype), b.to(x.device, x.dtype))
                    aa, bb = cache[key]
                    delta = torch.nn.functional.linear(torch.nn.functional.linear(x, aa), bb) * scale
                    return out - delta.to(out.dtype)

                handles.append(layer.register_forward_hook(hook))
            yield len(handles)
        finally:
            for h in handles:
                h.remove()
