from pathlib import Path

import pytest

from hone.config import RunConfig, load_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_recipe_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)
    data_paths = list(cfg.data.files.values()) if cfg.data.files else [cfg.data.path]
    for p in data_paths:  # paths resolve relative to the recipe; shared/ data may be absent
        assert Path(p).is_absolute()
        if "shared" not in p and "hone-bench-data" not in p:
            assert Path(p).exists(), p


def test_there_are_recipes():
    assert len(CONFIGS) >= 3
