"""Every broken fixture is rejected by the real CLI with file:line and field, exit code 2,
and ``data prepare`` leaves no output directory behind; every valid fixture passes."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hone.cli import app

FIX = Path(__file__).parent / "fixtures"
BROKEN = json.loads((FIX / "broken" / "EXPECT.json").read_text())
VALID = json.loads((FIX / "valid" / "EXPECT.json").read_text())
runner = CliRunner()


def _flags(schema, options):
    out = ["--schema", schema] if schema else []
    for k, v in (options or {}).items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def test_every_broken_file_is_listed():
    listed = {k for k in BROKEN if not k.startswith("../")}
    on_disk = {p.name for p in (FIX / "broken").iterdir() if p.name not in ("EXPECT.json",)}
    assert listed == on_disk and len(listed) >= 30


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_fixture_rejected_with_location(name, tmp_path):
    exp = BROKEN[name]
    path = (FIX / "broken" / name).resolve()
    flags = _flags(exp["schema"], exp["options"])
    r = runner.invoke(app, ["data", "check", str(path), *flags])
    assert r.exit_code == 2, r.output
    out = " ".join(r.output.split())  # undo rich's line wrapping
    where = f"{path.name}:{exp['line']}: {exp['field']}:" if exp["line"] is not None else f": {exp['field']}:"
    assert where in out, (where, r.output)
    for also in exp.get("also", []):
        assert f"{path.name}:{also['line']}: {also['field']}:" in out
    r = runner.invoke(app, ["data", "prepare", str(path), *flags, "-o", str(tmp_path / "out")])
    assert r.exit_code == 2 and "nothing was written" in " ".join(r.output.split())
    assert list(tmp_path.iterdir()) == []  # no output, no staging directory
    if "accept_with" in exp:
        r = runner.invoke(app, ["data", "check", str(path), *flags, *_flags(None, exp["accept_with"])])
        assert r.exit_code == 0, r.output


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_fixture_accepted_with_detected_schema(name, tmp_path):
    exp = VALID[name]
    path = FIX / "valid" / name
    rep = tmp_path / "rep.json"
    r = runner.invoke(app, ["data", "check", str(path), *_flags(None, exp.get("options")), "--json", str(rep)])
    assert r.exit_code == 0, r.output
    got = json.loads(rep.read_text())
    assert got["schema"] == {"sharegpt": "chat"}.get(exp["schema"], exp["schema"])
    assert got["valid"] == exp["rows"] and got["error_count"] == 0
