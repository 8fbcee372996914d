"""The training run: data -> cache -> transformer + LoRA -> steps -> checkpoints, on Lightning Fabric.

All randomness of a step (caption dropout, sigmas, noise) comes from one CPU generator that every rank advances
identically; with the data order a pure function of (seed, epoch), a resume state (step, data position, the
generator, optimizer, scheduler) puts a retry exactly where the interrupted run was.
"""

from __future__ import annotations

import gc
import json
import math
import threading
import time
from pathlib import Path

from zlt.core.constants import NAN_PATIENCE
from zlt.core.errors import BadInputError, JobFailedError
from zlt.trainer.accel import apply_speed
from zlt.trainer.adapter import MergedAdapter
from zlt.trainer.cache import DiskCache, PipelineEncoder, prepare
from zlt.trainer.config import TrainerConfig
from zlt.trainer.data import Sample, epoch_batches, scan
from zlt.trainer.emit import EventWriter
from zlt.trainer.loss import flow_matching_loss, sample_sigmas, timestep_weights
from zlt.trainer.memstats import MemoryLog, module_bytes, return_freed_memory
from zlt.trainer.models import (
    add_lora,
    load_encoders,
    load_sampling_parts,
    load_transformer,
    merge_lora_file,
    model_identity,
    resolve_adapter,
    torch_dtype,
)
from zlt.trainer.optim import build_optimizer, build_scheduler
from zlt.trainer.resume import ResumeMixin
from zlt.trainer.runtime import make_fabric, resolve
from zlt.trainer.sampling import Sampler
from zlt.trainer.tiny import TINY_LABEL

BUCKET_DIVISOR = 16  # VAE 8x down, then 2x2 patches


class StopFlag:
    """Set by SIGINT/SIGTERM once training runs: the current step finishes, then a checkpoint is saved."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self.armed = False  # signals stop the step loop only once training runs

    def set(self, reason: str) -> None:
        self.reason = reason
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()


class Trainer(ResumeMixin):
    def __init__(self, cfg: TrainerConfig, events: EventWriter, stop: StopFlag | None = None) -> None:
        self.cfg = cfg
        self.events = events
        self.stop = stop if stop is not None else StopFlag()  # not `or`: an unset flag is falsy
        self.out = Path(cfg.output.dir).expanduser()
        self.step = 0
        self.epoch = 0
        self.pos = 0  # micro-step position inside the epoch
        self.sampler = None
        self.last_lr = 0.0
        self._loss_fh = None
        self.mem = MemoryLog()  # <output>/memory.json: resident and allocator peaks per phase

    # --- set-up --------------------------------------------------------------------------------------------
    def setup(self) -> None:
        import torch

        cfg, ev = self.cfg, self.events
        cuda = torch.cuda.is_available()
        self.resolved = resolve(cfg, ev.warning, cuda_available=cuda, bf16_supported=cuda and torch.cuda.is_bf16_supported())
        self.fabric = make_fabric(cfg, self.resolved)
        self.model_cfg = cfg.model.model_copy(update={"weight_dtype": self.resolved.weight_dtype})
        ev.enabled = ev.enabled and self.fabric.is_global_zero
        self.world, self.rank = self.fabric.world_size, self.fabric.global_rank
        if cfg.model.is_tiny:
            ev.warning(TINY_LABEL)
        self.items = scan(cfg.data, BUCKET_DIVISOR)
        self.mem.mark("start")
        self._prepare_data()
        self.mem.mark("cached")  # the peak so far is the caching pass's; the text encoder is freed now
        self._setup_model()
        self.mem.tensor_bytes = {"transformer": module_bytes(self.transformer),
                                 "lora_trainable_params": sum(p.numel() for p in self.transformer.parameters() if p.requires_grad)}
        self.mem.mark("model_ready")
        self.gen = torch.Generator().manual_seed(cfg.training.seed)
        torch.manual_seed(cfg.training.seed + self.rank)  # LoRA dropout
        self.batches = self._epoch_batches(0)
        if len(self.batches) < self.world:
            raise BadInputError(f"{len(self.batches)} batch(es) per epoch cannot feed {self.world} devices", hint="add images or repeats")
        if cfg.output.init_lora:
            self._init_lora(Path(cfg.output.init_lora))
        if cfg.output.resume:
            self._resume()

    def _prepare_data(self) -> None:
        cfg, ev = self.cfg, self.events
        identity = model_identity(self.model_cfg)
        text_identity = identity + ":float8" if cfg.model.quantize == "float8" else identity
        cache = DiskCache(Path(cfg.cache.dir), identity, text_identity)
        self._encoders = None

        def factory():
            ev.phase("loading_model", f"VAE and text encoder of {cfg.model.name}")
            self._encoders = load_encoders(self.model_cfg)
            return PipelineEncoder(self._encoders.pipe, self.fabric.device)

        prompts = cfg.sample.prompts if cfg.sample.enable else []
        kwargs = dict(extra_texts=prompts, persist_texts=cfg.cache.text_embeddings, on_phase=ev.phase)
        # rank 0 fills the cache; the others read it afterwards (no two writers, no double encoding)
        if self.fabric.is_global_zero:
            self.data = prepare(self.items, cfg.data, cfg.training.seed, cache, factory, **kwargs)
        self.fabric.barrier()
        if not self.fabric.is_global_zero:
            self.data = prepare(self.items, cfg.data, cfg.training.seed, cache, factory, **kwargs)
        s = self.data.stats
        ev.phase("caching_text", f"latents: {s.latents_encoded} encoded, {s.latents_cached} cached; captions: "
                 f"{s.texts_encoded} encoded, {s.texts_cached} cached ({s.seconds:.1f}s)")
        if cfg.sample.enable:
            if self._encoders is not None:
                vae, scheduler = self._encoders.pipe.vae, self._encoders.pipe.scheduler
            else:
                vae, scheduler = load_sampling_parts(self.model_cfg)
            self.sampler = Sampler(vae, scheduler, cfg, self.data.texts, self.fabric.device)
        self._encoders = None  # the sampler keeps only the VAE; the text encoder goes now
        gc.collect()
        return_freed_memory()
        if self.resolved.accelerator == "cuda":
            import torch

            torch.cuda.empty_cache()

    def _setup_model(self) -> None:
        cfg, ev = self.cfg, self.events
        label = " (tiny random test model)" if cfg.model.is_tiny else ""
        ev.phase("loading_model", f"transformer of {cfg.model.name}{label}")
        from zlt.trainer.timestep import TimestepFp32  # lazy: pulls torch

        tr = load_transformer(self.model_cfg)
        self.adapter = MergedAdapter()
        if cfg.model.training_adapter:
            path = resolve_adapter(cfg.model.training_adapter)
            n = merge_lora_file(tr, path, keep=self.adapter)
            ev.phase("loading_model", f"merged training adapter {path.name} into {n} layers (off while sampling)")
        params = add_lora(tr, cfg.lora, cfg.training.seed)
        self.weight_dtype = torch_dtype(self.resolved.weight_dtype)
        self.speed = apply_speed(tr, cfg, self.resolved.accelerator, self.weight_dtype, ev.warning)
        ev.phase("loading_model", self.speed.describe())
        tr.train()
        self.transformer = tr
        wrapped = TimestepFp32(tr)  # t stays fp32 through the precision plugin
        if self.world > 1:
            # every rank loads the same frozen base: DDP need not broadcast its 6 B weights at start (nor can gloo
            # broadcast float8); only the LoRA is synchronised
            from torch.nn.parallel import DistributedDataParallel

            frozen = [n for n, p in wrapped.named_parameters() if not p.requires_grad]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(wrapped, frozen)
        self.model = self.fabric.setup_module(wrapped)
        opt = build_optimizer(params, cfg.training, self.resolved.accelerator, ev.warning)
        self.optimizer = self.fabric.setup_optimizers(opt)
        self.scheduler = build_scheduler(self.optimizer, cfg.training)
        n_train = sum(p.numel() for p in params)
        ev.phase("loading_model", f"LoRA rank {cfg.lora.rank} on {len(params) // 2} layers, {n_train:,} trainable parameters")

    # --- data ----------------------------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> list[list[Sample]]:
        t = self.cfg.training
        return epoch_batches(self.items, self.cfg.data, t.batch_size, t.seed, epoch)

    def _next_group(self) -> list[list[Sample]]:
        """The batches of one micro-step, one per rank; a new epoch starts when fewer than `world` are left."""
        if (self.pos + 1) * self.world > len(self.batches):
            self.epoch += 1
            self.pos = 0
            self.batches = self._epoch_batches(self.epoch)
        group = self.batches[self.pos * self.world:(self.pos + 1) * self.world]
        self.pos += 1
        return group

    def _draw(self, group: list[list[Sample]]):
        """Every rank draws the randomness of the whole group (identical streams), then keeps its own batch."""
        import torch

        t, p = self.cfg.training, self.cfg.data.caption_dropout
        mine = None
        for r, batch in enumerate(group):
            drop = (torch.rand(len(batch), generator=self.gen) < p).tolist() if p > 0 else [False] * len(batch)
            sig = sample_sigmas(len(batch), t.timestep_type, self.gen, shift=t.timestep_shift, content_or_style=t.content_or_style)
            lat = [self.data.latents[(s.image, s.flip, s.jitter)] for s in batch]
            noise = [torch.randn(x.shape, generator=self.gen) for x in lat]
            if r == self.rank:
                caps = ["" if d else self.items[s.image].caption for s, d in zip(batch, drop, strict=True)]
                mine = (lat, [self.data.texts[c] for c in caps], sig, noise)
        return mine

    def micro_step(self, group, accumulate: bool):
        lat, caps, sig, noise = self._draw(group)
        dev, dt = self.fabric.device, self.weight_dtype
        lat = [x.to(dev) for x in lat]
        noise = [n.to(dev) for n in noise]
        caps = [c.to(dev, dt) for c in caps]
        from zlt.trainer.timestep import box  # lazy: pulls torch

        sig = sig.to(dev)
        kind = self.cfg.training.timestep_type
        weights = timestep_weights(sig, kind) if kind == "weighted" else None
        with self.fabric.no_backward_sync(self.model, enabled=accumulate):
            loss = flow_matching_loss(self.model, lat, caps, sig, noise, dtype=dt, weights=weights, timestep=box)
            self.fabric.backward(loss / self.cfg.training.gradient_accumulation)
        return loss.detach()

    def train_step(self) -> float:
        """One optimizer step over `gradient_accumulation` micro-batches; returns the mean loss."""
        t = self.cfg.training
        total = 0.0
        for i in range(t.gradient_accumulation):
            total = total + self.micro_step(self._next_group(), accumulate=i < t.gradient_accumulation - 1)
        if t.max_grad_norm:
            self.fabric.clip_gradients(self.model, self.optimizer, max_norm=t.max_grad_norm, error_if_nonfinite=False)
        self.last_lr = self.optimizer.param_groups[0]["lr"]  # the lr this update used
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        if self.world > 1:  # report the loss of the whole step, not rank 0's share
            total = self.fabric.all_reduce(total, reduce_op="mean")
        return float(total) / t.gradient_accumulation

    # --- resume / save -------------------------------------------------------------------------------------
    # --- the run -------------------------------------------------------------------------------------------
    def run(self) -> str:
        """Train to max_steps (or a stop); returns 'finished' or 'stopped'."""
        c, ev = self.cfg, self.events
        total = c.training.max_steps
        self.out.mkdir(parents=True, exist_ok=True)
        if self.fabric.is_global_zero:
            self._loss_fh = open(self.out / "loss_log.jsonl", "a", encoding="utf-8")
        where = self.resolved.accelerator + (f" x{self.world}" if self.world > 1 else "")
        t = c.training
        ev.phase("training", f"steps {self.step + 1}..{total} on {where} ({self.resolved.precision}); effective batch "
                 f"{t.batch_size * t.gradient_accumulation * self.world} = batch {t.batch_size} x accumulation "
                 f"{t.gradient_accumulation} x {self.world} device(s)")
        ev.start_training(self.step)
        t0 = time.monotonic()
        stopped = False
        nonfinite_streak = 0
        while self.step < total:
            loss = self.train_step()
            finite = math.isfinite(loss)
            lr = self.last_lr
            if self._loss_fh:  # strict JSON: a nan/inf loss is null plus a flag
                row = {"step": self.step, "loss": loss if finite else None, "lr": lr, "epoch": self.epoch,
                       "t": round(time.monotonic() - t0, 3)}
                self._loss_fh.write(json.dumps(row if finite else {**row, "loss_nonfinite": True}) + "\n")
            stop_here = bool(self.stop) or self.step == c.training.stop_after_step
            # Every non-finite step (and the first finite one after) is reported: the runner counts the streak.
            ev.progress(self.step, total, loss, lr, force=stop_here or not finite or nonfinite_streak > 0)
            self.mem.mark(f"step_{self.step}")
            nonfinite_streak = 0 if finite else nonfinite_streak + 1
            if c.training.stop_on_nan and nonfinite_streak >= NAN_PATIENCE:
                if self._loss_fh:
                    self._loss_fh.close()
                raise JobFailedError(f"loss is {loss} at step {self.step} ({nonfinite_streak} steps in a row): "
                                     "training diverged", hint="lower training.learning_rate, or train in bf16 instead of fp16")
            if finite and (self.step % c.output.save_every == 0 or (stop_here and self.step < total)):
                self.save()  # never a checkpoint from a step whose loss is nan/inf: the last good one must stay
            if self.sampler and (self.step % c.sample.every == 0 or self.step == total):
                self.sampler.draw(self)
            if stop_here and self.step < total:
                why = f"{self.stop.reason} received" if self.stop else f"stop_after_step {self.step}"
                # what continues it (if anything: an early stop is a success) is the runner's to say, by job id
                ev.warning(f"stopped at step {self.step}/{total} ({why}); checkpoint and resume state saved")
                stopped = True
                break
        if not stopped:
            self.save(final=True)
        if self._loss_fh:
            self._loss_fh.close()
        if self.fabric.is_global_zero:
            self.mem.mark("end")
            self.mem.write(self.out)
        return "stopped" if stopped else "finished"
