"""hone: turn a general pre-trained language model into a domain specialist.

The public Python API.  Everything here is a re-export of the core the CLI uses (and a REST API will);
``__all__`` is pinned by a test.
"""

from hone.config import RunConfig, load_config
from hone.data.check import DataReport
from hone.data.records import Record
from hone.errors import ArtifactError, ConfigError, DataError, HoneError, ModelError, RequestError

__version__ = "0.1.0"


def check_data(path: str, **data_options) -> DataReport:
    """Validate a data file without keeping it in memory; returns the DataReport (never raises on bad rows)."""
    from hone.data.check import check_file

    return check_file(str(path), load_config({"data": {"path": str(path), **data_options}}).data)


def prepare_data(config: RunConfig | dict | str, out_dir: str, *, overwrite: bool = False):
    """Run ``hone data prepare``: returns a Prepared (splits, report, metadata); raises DataError on bad input."""
    from hone.data.prepare import prepare

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    return prepare(cfg, out_dir, overwrite=overwrite)


def load(artifact: str):
    """Load a trained artifact for use: ``hone.load("runs/x/artifact").predict(["my bill is wrong"])``."""
    from hone.serve.engine import load as _load

    return _load(artifact)


def __getattr__(name: str):
    """``hone.Classifier`` / ``hone.Generator`` (what ``hone.load`` returns), imported on first use: ``import hone``
    stays free of torch."""
    if name == "Classifier":
        from hone.serve.engine import Classifier

        return Classifier
    if name == "Generator":
        from hone.serve.generator import Generator

        return Generator
    raise AttributeError(f"module 'hone' has no attribute {name!r}")


def redact(text: str) -> str:
    """Redact PII from one text with hone's default redactor."""
    from hone.data.pii import redact as _redact

    return _redact(text)


__all__ = [
    "ArtifactError", "Classifier", "ConfigError", "DataError", "DataReport", "Generator", "HoneError", "ModelError",
    "Record", "RequestError",
    "RunConfig", "__version__", "check_data", "load", "load_config", "prepare_data", "redact",
]
