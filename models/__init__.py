"""mgc's genre models: a Flax NNX short-chunk CNN trained on feature stores.

Reads stores and computes features only through ``engine``'s public API.
"""

from models.checkpoint import TrainedModel, load_model
from models.config import ModelConfig, ModelError, TrainConfig, tiny_model_config
from models.evaluate import evaluate
from models.predict import predict
from models.train import train

__all__ = [
    "ModelConfig",
    "ModelError",
    "TrainConfig",
    "TrainedModel",
    "evaluate",
    "load_model",
    "predict",
    "tiny_model_config",
    "train",
]
