"""Training loops: the latent regressor (`training.regressor`) and checkpoint helpers.

Imports are lazy so that `latentcomp.training.checkpoint` stays light and cycle-free.
"""

__all__ = ["TrainConfig", "TrainResult", "train_regressor"]


def __getattr__(name):
    if name in __all__:
        from . import regressor

        return getattr(regressor, name)
    raise AttributeError(name)
