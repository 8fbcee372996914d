"""What the training run keeps across a stop: its fingerprint, the resume state it saves and restores, the warm
start of `zlt retrain`, and the LoRA file's metadata. A mixin of `Trainer` (zlt/trainer/loop.py), split off so each
file reads in one go; it uses the trainer's attributes (cfg, transformer, optimizer, scheduler, fabric, gen, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zlt import __version__
from zlt.core.errors import BadInputError
from zlt.core.fsutil import atomic_write_text, sha256_json
from zlt.trainer import checkpoint as ck
from zlt.trainer.models import torch_dtype
from zlt.trainer.tiny import TINY_LABEL


class ResumeMixin:
    def fingerprint(self) -> dict[str, str]:
        c = self.cfg
        return {
            "lora": sha256_json(c.lora.model_dump()),
            # float8 storage trains a slightly different base; the old key stays for bf16 so older states match
            "model": sha256_json([c.model.name, c.model.training_adapter]
                                 + (["float8"] if c.model.quantize == "float8" else [])),
            "data": sha256_json([[i.sha256, i.caption, i.bucket] for i in self.items] + [c.data.model_dump(exclude={"path"})]),
            "batch": sha256_json([c.training.batch_size, c.training.gradient_accumulation, self.world, c.training.seed]),
        }

    def _order(self) -> list[list[list[int]]]:
        return [[[s.image, int(s.flip), s.jitter] for s in b] for b in self.batches]

    def _resume(self) -> None:
        import torch

        st = ck.latest_state(self.out, self.cfg.name, self.events.warning)
        if st is None:
            self.events.warning(f"resume asked but no resume state in {self.out / ck.STATE_DIR}; starting at step 0")
            return
        fp = self.fingerprint()
        if st.fingerprint.get("lora") != fp["lora"]:
            raise BadInputError(f"resume state {st.path} was trained with another LoRA config (rank/alpha/targets)",
                                hint="resume with the same model.lora settings, or start a new job")
        changed = [k for k in ("model", "data", "batch") if st.fingerprint.get(k) != fp[k]]
        if changed:
            self.events.warning(f"resuming although {', '.join(changed)} changed since step {st.step}")
        named = dict(self.transformer.named_parameters())
        with torch.no_grad():
            for name, value in st.trainable.items():
                named[name].copy_(value)
        self.optimizer.load_state_dict(st.optimizer)
        self.scheduler.load_state_dict(st.scheduler)
        # `zlt retrain --more-steps` extends max_steps: the next update's lr comes from this run's schedule (the
        # total), not the one saved in the state; with max_steps unchanged the two are the same number.
        sch = self.scheduler
        for group, base, fn in zip(self.optimizer.param_groups, sch.base_lrs, sch.lr_lambdas, strict=True):
            group["lr"] = base * fn(sch.last_epoch)
        self.fabric.strategy.precision.load_state_dict(st.precision)
        torch.set_rng_state(st.rng["torch"])
        if "cuda" in st.rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st.rng["cuda"])
        self.gen.set_state(st.rng["noise"])
        self.step, self.epoch, self.pos = st.step, st.epoch, st.batch_in_epoch
        self.batches = self._epoch_batches(self.epoch)
        if self._order() != st.data_order:
            self.events.warning("the data order differs from the resume state's (dataset or settings changed)")
        self._truncate_loss_log(st.step)
        self.events.resumed(st.step, str(st.path))

    def _init_lora(self, path: Path) -> None:
        """Warm start (`zlt retrain`): copy LoRA weights into the fresh adapter; the optimizer starts empty."""
        import torch
        from safetensors.torch import load_file

        try:
            loaded = load_file(str(path))
        except (OSError, ValueError) as e:
            raise BadInputError(f"output.init_lora: cannot read {path}: {e}") from None
        # peft names a parameter <module>.lora_A.default.weight; the file says transformer.<module>.lora_A.weight
        named = {n.replace(f".{ck.ADAPTER}.", ".").split("_forward_module.")[-1]: p
                 for n, p in self.transformer.named_parameters() if p.requires_grad}
        missing = []
        with torch.no_grad():
            for key, value in loaded.items():
                target = named.get(key.removeprefix("transformer."))
                if target is None:
                    missing.append(key)
                    continue
                if tuple(target.shape) != tuple(value.shape):
                    raise BadInputError(f"output.init_lora: {key} has shape {tuple(value.shape)}, the LoRA "
                                        f"{tuple(target.shape)}", hint="warm start needs the same rank and targets")
                target.copy_(value.to(target.dtype))
        if missing:
            self.events.warning(f"init_lora: {len(missing)} tensor(s) of {path.name} match no trained module "
                                f"(e.g. {missing[0]}); ignored")
        self.events.phase("loading_model", f"LoRA initialised from {path}")

    def _state(self) -> ck.ResumeState:
        import torch

        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "noise": self.gen.get_state()}
        if self.resolved.accelerator == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        trainable = {n: p.detach().float() for n, p in self.transformer.named_parameters() if p.requires_grad}
        return ck.ResumeState(
            step=self.step, epoch=self.epoch, batch_in_epoch=self.pos, trainable=trainable,
            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(), rng=rng,
            precision=self.fabric.strategy.precision.state_dict(), fingerprint=self.fingerprint(),
            data_order=self._order(),
        )

    def lora_extra_metadata(self) -> dict[str, str]:
        c = self.cfg
        meta = {
            "software": json.dumps({"name": "zlt", "version": __version__, "trainer": "lightning"}),
            "ss_base_model_version": "zimage",
            "ss_output_name": c.name,
            "ss_network_dim": str(c.lora.rank),
            "ss_network_alpha": str(c.lora.alpha),
            "ss_learning_rate": str(c.training.learning_rate),
            "ss_max_train_steps": str(c.training.max_steps),
            "ss_seed": str(c.training.seed),
            "ss_num_train_images": str(len(self.items)),
            "zlt.base_model": c.model.name,
            "zlt.trigger": c.data.trigger or "",
            "zlt.tiny_model": "true" if c.model.is_tiny else "false",
        }
        if c.model.is_tiny:
            meta["zlt.note"] = TINY_LABEL
        return meta

    def save(self, final: bool = False) -> Path:
        """A LoRA file (+ resume state) now; only rank 0 writes."""
        c, ev = self.cfg, self.events
        path = ck.final_file(self.out, c.name) if final else ck.step_file(self.out, c.name, self.step)
        if self.fabric.is_global_zero:
            ev.phase("saving", f"step {self.step}")
            if not final:
                ck.prune(self.out, c.name, c.output.keep, self.step, (".safetensors",))
            ck.save_lora(path, self.transformer, dtype=torch_dtype(c.output.save_dtype), step=self.step,
                         epoch=self.epoch, extra=self.lora_extra_metadata())
            if not (final and self.step % c.output.save_every == 0):  # that state was just written
                ck.save_state(self.out, c.name, self._state(), c.output.keep)
            if self._loss_fh:
                self._loss_fh.flush()
            ev.checkpoint(str(path.resolve()), self.step)
        self.fabric.barrier()
        return path

    def _truncate_loss_log(self, step: int) -> None:
        log = self.out / "loss_log.jsonl"
        if log.is_file():
            keep = [ln for ln in log.read_text(encoding="utf-8").splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
            atomic_write_text(log, "".join(ln + "\n" for ln in keep))
