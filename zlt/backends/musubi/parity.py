"""What each spec field becomes on musubi-tuner: its column of docs/parity.md."""

from __future__ import annotations

from zlt.backends.carried import PREPARED, Carried, T, Z

MUSUBI_MAP: dict[str, Carried] = {
    "name": T("--output_name"),
    "model.base.name": T("local files only: an unknown name without model.base.dit warned"),
    "model.base.source": T("local files only: modelscope/builtin warned"),
    "model.base.precision": T("DiT loaded in the --mixed_precision dtype; a different weight dtype: warned"),
    "model.base.variant": T("--dit default file (turbo, de-turbo or base weights)"),
    "model.base.training_adapter": T("zlt.backends.musubi.adapter converts it to musubi's lora_unet_ keys (cached by content "
                                     "hash, keys checked) -> --base_weights"),
    "model.base.quantize": T("--fp8_base --fp8_scaled, --fp8_llm (auto: the profile's levers)"),
    "model.base.dit": T("--dit"),
    "model.base.vae": T("--vae (both caching and training)"),
    "model.base.text_encoder": T("--text_encoder (text-encoder caching and training)"),
    "model.lora.enable": T("not supported when false: warned"),
    "model.lora.rank": T("--network_dim"),
    "model.lora.alpha": T("--network_alpha"),
    "model.lora.dropout": T("--network_dropout"),
    "model.lora.target_modules": T("--network_args exclude_patterns=['.*'] include_patterns=[(layers|noise_refiner|"
                                   "context_refiner)\\.\\d+\\.MODULE]"),
    "dataset.path": T("dataset TOML image_directory (the prepared folder)"),
    "dataset.resolution": T("dataset TOML resolution (capped by the profile)"),
    "dataset.upscale": T("dataset TOML bucket_no_upscale"),
    "dataset.caption.strategy": Z(PREPARED),
    "dataset.caption.trigger_token": Z(PREPARED),
    "dataset.caption.trigger_position": Z(PREPARED),
    "dataset.caption.caption_ext": T("dataset TOML caption_extension"),
    "dataset.caption.default_caption": Z(PREPARED),
    "dataset.caption.dropout": T("not supported (cached text-encoder outputs): warned"),
    "dataset.repeats": T("dataset TOML num_repeats"),
    "dataset.shuffle": T("always shuffles: false warned"),
    "dataset.augment.horizontal_flip": T("no flip in musubi: zlt's dataset prepare writes a mirrored copy of every "
                                         "image (as ai-toolkit's flip_x does); a bare render is warned"),
    "dataset.augment.color_jitter": T("not supported: warned"),
    "training.batch_size": T("dataset TOML batch_size"),
    "training.gradient_accumulation": T("--gradient_accumulation_steps"),
    "training.max_steps": T("--max_train_steps (a retry: the remaining steps) and the schedule's num_training_steps"),
    "training.warmup_steps": T("--lr_scheduler_args num_warmup_steps (and --lr_warmup_steps for metadata)"),
    "training.learning_rate": T("--learning_rate (prodigy: a multiplier, < 0.1 means 1.0)"),
    "training.scheduler": T("--lr_scheduler_type transformers.optimization.get_{constant,cosine,linear}_schedule_"
                            "with_warmup with the whole run's length, so a retry continues the same LR curve"),
    "training.optimizer.type": T("--optimizer_type adamw/adamw8bit, prodigyopt.Prodigy, adafactor + --optimizer_args "
                                 "(adafactor: relative_step=False scale_parameter=False warmup_init=False)"),
    "training.optimizer.use_8bit": T("adamw8bit; other optimizers: warned"),
    "training.optimizer.weight_decay": T("--optimizer_args weight_decay"),
    "training.mixed_precision": T("--mixed_precision (accelerate and the script)"),
    "training.gradient_checkpointing": T("--gradient_checkpointing (null: the profile's musubi lever)"),
    "training.timestep_type": T("--timestep_sampling sigmoid/uniform/shift; weighted: warned, shift"),
    "training.timestep_shift": T("--discrete_flow_shift"),
    "training.compile": T("on: --compile (its block-by-block torch.compile, needs Triton); auto: upstream's default, "
                          "off"),
    "training.content_or_style": T("no timestep bias: anything but balanced warned"),
    "training.seed": T("--seed"),
    "training.sample.enable": T("--sample_prompts musubi_sample_prompts.json --sample_every_n_steps"),
    "training.sample.every": T("--sample_every_n_steps"),
    "training.sample.prompts": T("musubi_sample_prompts.json prompt"),
    "training.sample.steps": T("musubi_sample_prompts.json sample_steps (null: by variant)"),
    "training.sample.guidance_scale": T("musubi_sample_prompts.json cfg_scale (musubi applies CFG above 1.0 only: "
                                        "0 < g <= 1 warned)"),
    "training.sample.seed": T("musubi_sample_prompts.json seed (+1 per prompt)"),
    "job.resources.gpu": T("one process on one GPU: more than 1 warned"),
    "job.logging.level": Z("its own log level (musubi logs at INFO)"),
    "output.save.every": T("--save_every_n_steps"),
    "output.save.keep": T("--save_last_n_steps / --save_last_n_steps_state every x (keep - 1): keeps exactly keep"),
    "output.save.dtype": T("--save_precision"),
}
