"""Which versions each served model has, and the registry name a (model, version) request resolves to."""
from __future__ import annotations

from dataclasses import dataclass

from kserve.errors import ModelNotFound


def registry_key(name: str, version: int | str) -> str:
    """The KServe registry name of one version; the '/' keeps it off the unversioned URL routes."""
    return f"{name}/{version}"


@dataclass(frozen=True)
class Catalog:
    """model name -> its versions, ascending; a request without a version gets the highest."""

    versions: dict[str, tuple[int, ...]]

    def resolve(self, name: str, version: str = "") -> str:
        """The registry name for ``name`` at ``version`` ('' for the latest); ModelNotFound otherwise."""
        if name not in self.versions:
            raise ModelNotFound(name)
        if not version:
            return registry_key(name, self.versions[name][-1])
        if not version.isdigit() or int(version) not in self.versions[name]:
            raise ModelNotFound(f"{name} version {version} (versions: "
                                f"{', '.join(map(str, self.versions[name]))})")
        return registry_key(name, int(version))

    def metadata(self, name: str, key_metadata: dict) -> dict:
        """V2 model metadata under the model's own name, with its versions."""
        return {**key_metadata, "name": name, "versions": [str(v) for v in self.versions[name]],
                "platform": "convc"}
