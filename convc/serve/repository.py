"""Scanning a Triton-layout model repository: REPO/<model>/config.pbtxt, REPO/<model>/<version>/model.so."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from convc.serve.config import ModelConfig, RepositoryError, read_config

LIBRARY_NAME = "model.so"


@dataclass(frozen=True)
class ModelVersion:
    """One servable library: model name, version (a positive integer, as in Triton), file, config."""

    name: str
    version: int
    library: Path
    config: ModelConfig


def scan_repository(root: str | Path) -> list[ModelVersion]:
    """Every ``<model>/<version>/model.so`` under ``root``, sorted by model then version.

    Raises ``RepositoryError`` for a missing repository, a model without config.pbtxt or
    without any version, and a config whose name is not its folder's.
    """
    root = Path(root)
    if not root.is_dir():
        raise RepositoryError(f"{root}: no such model repository folder")
    found = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        config = read_config(model_dir / "config.pbtxt")
        if config.name != model_dir.name:
            raise RepositoryError(f"{model_dir / 'config.pbtxt'}: name {config.name!r} is not the folder's "
                                  f"name {model_dir.name!r}")
        versions = sorted(int(p.name) for p in model_dir.iterdir()
                          if p.is_dir() and p.name.isdigit() and int(p.name) > 0 and (p / LIBRARY_NAME).is_file())
        if not versions:
            raise RepositoryError(f"{model_dir}: no version folder with a {LIBRARY_NAME} (expected "
                                  f"{model_dir}/1/{LIBRARY_NAME})")
        found += [ModelVersion(model_dir.name, v, model_dir / str(v) / LIBRARY_NAME, config) for v in versions]
    if not found:
        raise RepositoryError(f"{root}: the repository has no models (expected {root}/<model>/1/{LIBRARY_NAME})")
    return found
