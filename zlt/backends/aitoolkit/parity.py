"""What each spec field becomes on ai-toolkit: its column of docs/parity.md."""

from __future__ import annotations

from zlt.backends.carried import PREPARED, Carried, T, Z

AITOOLKIT_MAP: dict[str, Carried] = {
    "name": T("config.name, meta.name (output file names)"),
    "model.base.name": T("model.name_or_path (the default Turbo name with another variant: that variant's repo)"),
    "model.base.source": T("hub or local path in model.name_or_path; 'modelscope': warned"),
    "model.base.precision": T("loaded in train.dtype; a different weight dtype: warned"),
    "model.base.variant": T("model.name_or_path + extras_name_or_path (De-Turbo: ostris/Z-Image-De-Turbo with "
                            "Tongyi-MAI/Z-Image-Turbo extras, as upstream's recipe)"),
    "model.base.training_adapter": T("model.assistant_lora_path (merged for training, off while sampling)"),
    "model.base.quantize": T("model.quantize / quantize_te (auto: the profile's levers)"),
    "model.base.dit": T("not supported: warned (musubi only)"),
    "model.base.vae": T("not supported: warned (musubi only)"),
    "model.base.text_encoder": T("not supported: warned (musubi only)"),
    "model.lora.enable": T("not supported when false: warned"),
    "model.lora.rank": T("network.linear"),
    "model.lora.alpha": T("network.linear_alpha; ai-toolkit forces alpha = rank for Z-Image (lora_special.py "
                          "peft format): warned when they differ, the render records the trained alpha"),
    "model.lora.dropout": T("network.dropout"),
    "model.lora.target_modules": T("network.network_kwargs.only_if_contains, transformer_only: false (main layers "
                                   "and refiners), ignore_if_contains: all_final_layer"),
    "dataset.path": T("datasets[0].folder_path (the prepared folder)"),
    "dataset.resolution": T("datasets[0].resolution (buckets up to the profile's cap)"),
    "dataset.upscale": Z("dataset prepare upscales small images"),
    "dataset.caption.strategy": Z(PREPARED),
    "dataset.caption.trigger_token": T("trigger_word"),
    "dataset.caption.trigger_position": Z(PREPARED),
    "dataset.caption.caption_ext": T("datasets[0].caption_ext"),
    "dataset.caption.default_caption": T("datasets[0].default_caption"),
    "dataset.caption.dropout": T("datasets[0].caption_dropout_rate"),
    "dataset.repeats": T("datasets[0].num_repeats"),
    "dataset.shuffle": T("always shuffles: false warned"),
    "dataset.augment.horizontal_flip": T("datasets[0].flip_x"),
    "dataset.augment.color_jitter": T("not supported: warned"),
    "training.batch_size": T("train.batch_size"),
    "training.gradient_accumulation": T("train.gradient_accumulation"),
    "training.max_steps": T("train.steps"),
    "training.warmup_steps": T("constant: lr_scheduler constant_with_warmup + num_warmup_steps; cosine/linear "
                               "have no warmup: warned"),
    "training.learning_rate": T("train.lr (prodigy: a multiplier, < 0.1 means 1.0)"),
    "training.scheduler": T("train.lr_scheduler: constant, cosine (CosineAnnealingLR eta_min 0), linear "
                            "(LinearLR start_factor 1.0, end_factor 0.0: decays)"),
    "training.optimizer.type": T("train.optimizer adamw/adamw8bit, prodigy (use_bias_correction, safeguard_warmup), "
                                 "adafactor (relative_step/scale_parameter/warmup_init false)"),
    "training.optimizer.use_8bit": T("adamw8bit; other optimizers: warned"),
    "training.optimizer.weight_decay": T("train.optimizer_params.weight_decay"),
    "training.mixed_precision": T("train.dtype (fp16 -> bf16 where the card has bf16: warned)"),
    "training.gradient_checkpointing": T("train.gradient_checkpointing (null: the profile's ai_toolkit lever)"),
    "training.timestep_type": T("train.timestep_type (uniform -> linear)"),
    "training.timestep_shift": T("fixed at 3.0 in z_image.py: any other value warned"),
    "training.compile": T("on: model.compile + block_compile (block-level torch.compile); auto: upstream's default, "
                          "off"),
    "training.content_or_style": T("train.content_or_style"),
    "training.seed": T("SEED environment variable (run.py seeds from it)"),
    "training.sample.enable": T("train.disable_sampling"),
    "training.sample.every": T("sample.sample_every"),
    "training.sample.prompts": T("sample.prompts"),
    "training.sample.steps": T("sample.sample_steps (null: by variant)"),
    "training.sample.guidance_scale": T("sample.guidance_scale = spec + 1 (z_image.py subtracts 1)"),
    "training.sample.seed": T("sample.seed (walk_seed: +1 per prompt)"),
    "job.resources.gpu": T("one process on one GPU: more than 1 warned"),
    "job.logging.level": T("performance_log_every 10 at debug, else 0 (off)"),
    "output.save.every": T("save.save_every"),
    "output.save.keep": T("save.max_step_saves_to_keep"),
    "output.save.dtype": T("save.dtype"),
}
