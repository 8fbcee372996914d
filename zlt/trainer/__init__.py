"""The built-in trainer (`training.backend: lightning`): Lightning Fabric + diffusers + peft.

`python -m zlt.trainer trainer.json` (see `zlt.trainer.__main__`); the config is `zlt.trainer.config.TrainerConfig`,
written by `zlt.backends.lightning.render.render_lightning`. Importing this package imports no torch.
"""
