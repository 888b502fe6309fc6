"""The zoo's table of models and ``build``, the one entry point that checks its arguments."""
from __future__ import annotations

from collections.abc import Callable

import onnx

from convc.zoo import dcgan, mobilenet, resnet, tiny, unet, vgg
from convc.zoo.builder import DEFAULT_OPSET, ZooError, check_opset

MODELS: dict[str, Callable[..., onnx.ModelProto]] = {
    **resnet.MODELS, **mobilenet.MODELS, **dcgan.MODELS, **unet.MODELS, **vgg.MODELS,
    **tiny.MODELS,
}


def build(name: str, *, batch: int = 1, image_size: int | None = None, seed: int = 0,
          opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Build zoo model ``name`` with deterministic random weights drawn from ``seed``.

    Input "input" is NCHW float32 of shape (batch, 3, image_size, image_size) (for the
    DCGAN generators: (batch, latent, 1, 1)); ``image_size=None`` picks the model's
    default. Raises ZooError for an unknown name or a setting the model cannot take.
    """
    if name not in MODELS:
        raise ZooError(f"unknown zoo model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    if batch < 1:
        raise ZooError(f"{name}: batch must be at least 1, got {batch}")
    check_opset(opset)
    return MODELS[name](batch=batch, image_size=image_size, seed=seed, opset=opset)
