"""Process settings, read from the environment (``HONE_*``), never from run configs.

``HONE_HOME`` (default ``~/.hone``) holds runs, caches and converted models; every command
resolves its default paths through :func:`get_settings` so the variable is honoured
everywhere.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HONE_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path("~/.hone"))
    # compile and use hone's native CPU kernels (``hone.model.native``) where a C compiler is found
    native_kernels: bool = True

    @property
    def root(self) -> Path:
        return self.home.expanduser()

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def models_dir(self) -> Path:
        """Converted / dequantized models (e.g. the embedded SmolLM2 rebuilt from GGUF)."""
        return self.root / "models"


def get_settings() -> Settings:
    """Fresh settings each call, so a changed environment (tests, long-lived servers) is seen."""
    return Settings()
