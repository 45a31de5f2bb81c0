"""``hone data prepare``: read -> validate -> clean -> redact PII -> de-duplicate -> split ->
leakage check -> augment (train) -> balance (train) -> write, atomically.

Nothing is written unless every row validates; PII is redacted in memory before anything is
persisted; the output directory appears whole or not at all.  Outputs are a pure function of
the inputs and the config (no timestamps), so running twice gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hone import artifacts
from hone.config import DataConfig, RunConfig
from hone.data.check import DataReport, label_stats, validate
from hone.data.read import read_rows
from hone.data.records import META_KEY, Problem, Record, labels_of, map_texts, output_schema
from hone.errors import DataError

Log = Callable[[str], None]


@dataclass
class Prepared:
    splits: dict[str, list[Record]]
    report: DataReport
    metadata: dict[str, Any]
    out_dir: Path | None = None


def input_files(data: DataConfig) -> dict[str, str]:
    if data.files:
        return dict(data.files)
    if not data.path:
        raise DataError("no input data: set data.path (a file) or data.files (existing splits)")
    return {"all": data.path}


def load_tokenizer(name: str | None) -> Any:
    if not name:
        return None
    from hone.model.load import load_tokenizer as _load

    return _load(name)


def read_and_validate(data: DataConfig, tokenizer: Any = None) -> tuple[dict[str, list[Record]], DataReport]:
    """Read every input file and validate all rows; raises DataError listing every error."""
    files = input_files(data)
    report = DataReport(files=list(files.values()))
    parts: dict[str, list[Record]] = {}
    group_ids: dict[str, str] = {}
    first: tuple[str, str] | None = None  # (file, schema) of the first file with valid rows
    for part, path in files.items():
        problems: list = []
        rows = read_rows(path, problems, fmt=data.format, encoding=data.encoding, txt_mode=data.txt_mode,
                         text_column=data.text_column, label_column=data.label_column,
                         multi_label_sep=data.multi_label_sep, prompt_column=data.prompt_column,
                         completion_column=data.completion_column)
        group = data.split.group_column
        sub = DataReport(files=[path])
        recs = validate(_with_groups(rows, group, problems, group_ids), sub, schema=data.schema_,
                        read_problems=problems, min_examples=data.min_examples if part in ("all", "train") else 1,
                        tokenizer=tokenizer, max_length=data.max_length)
        if not sub.rows and all(p.line is None for p in sub.errors):  # (not a missing column: reported below)
            raise DataError(f"{path}: no rows (an empty file, or a header without rows)")
        if sub.schema and first and output_schema(sub.schema) != output_schema(first[1]):
            raise DataError(f"{path}: {sub.schema} rows, where {first[0]} holds {first[1]} rows; the files of "
                            "data.files must hold one kind of data (set data.schema to say which)")
        first = first or ((path, sub.schema) if sub.schema else None)
        _merge(report, sub)
        parts[part] = recs
    report.labels, report.multi_label, report.imbalance_ratio = label_stats(
        r for recs in parts.values() for r in recs)
    if data.split.group_column and len(parts) > 1:  # split files are kept as given: say where a group spans two
        seen = {part: {r.meta.get("group") for r in recs} for part, recs in parts.items()}
        for part in ("validation", "test"):
            shared = len(seen.get(part, set()) & seen.get("train", set()))
            if shared:
                report.add(Problem("warning", files[part], None, data.split.group_column,
                                   f"{shared} group(s) of data.split.group_column are in both {part} and train "
                                   "(split files are kept as given): the evaluation sees customers it trained on"))
    if not report.ok:
        shown = "\n  ".join(str(p) for p in report.errors[:20])
        more = f"\n  ... and {report.error_count - 20} more" if report.error_count > 20 else ""
        raise DataError(f"{report.error_count} error(s) in the input data; nothing was written\n  {shown}{more}",
                        ) from None
    return parts, report


def _with_groups(rows, group: str | None, problems: list, ids: dict[str, str]):
    """The group column moved into the row's marker, as a number (``g1``, ``g2``, ... in order of first appearance,
    shared by every input file through ``ids``): the column is often a customer's phone number or e-mail, which
    the prepared files would otherwise carry unredacted."""
    for raw in rows:
        if group is not None and isinstance(raw.obj, dict):
            val = raw.obj.get(group)
            if val is None or str(val).strip() == "":
                problems.append(Problem("error", raw.source, raw.line, group, "missing group id (data.split.group_column)"))
                continue
            raw.obj = {k: v for k, v in raw.obj.items() if k != group}
            raw.obj[META_KEY] = {"group": ids.setdefault(str(val), f"g{len(ids) + 1}")}
        yield raw


def _merge(into: DataReport, sub: DataReport) -> None:
    into.schema = into.schema or sub.schema
    into.rows += sub.rows
    into.valid += sub.valid
    for p in sub.errors + sub.warnings:
        into.add(p)
    into.error_count += sub.error_count - len(sub.errors)
    into.warning_count += sub.warning_count - len(sub.warnings)
    if sub.length_chars and not into.length_chars:
        into.length_chars = sub.length_chars
    if sub.length_tokens and not into.length_tokens:
        into.length_tokens = sub.length_tokens


def _redact(records: list[Record], schema: str, data: DataConfig) -> tuple[list[Record], dict]:
    from hone.data.pii import Redactor

    from rich.progress import track

    red = Redactor(entities=data.pii.entities, patterns=data.pii.patterns)
    out, changed = [], 0
    for r in track(records, description="redacting PII", transient=True, disable=len(records) < 200):
        scope = red.scope()  # one pseudonym scope per record / conversation
        new = map_texts(schema, r.data, lambda t, s=scope: red.redact(t, s))
        changed += new != r.data
        out.append(Record(new, r.source, r.line, dict(r.meta)))
    return out, {"records_changed": changed, "entities": dict(sorted(red.counts.items()))}


def _augment(train: list[Record], schema: str, cfg: RunConfig) -> tuple[list[Record], dict]:
    from hone.data.augment import augment_rows

    a = cfg.data.augment
    if schema != "classification":
        raise DataError(f"data.augment supports classification data, not {schema}")
    new = augment_rows([r.data for r in train], methods=a.methods, per_example=a.per_example, p=a.p,
                       seed=cfg.seed, model=a.model, max_new_tokens=a.max_new_tokens)
    out = []
    by_method: dict[str, int] = {}
    for row in new:
        mark = row.pop(META_KEY)
        src = train[mark["source_index"]]
        by_method[mark["augmented"]] = by_method.get(mark["augmented"], 0) + 1
        out.append(Record(row, src.source, src.line, {**src.meta, "augmented": mark["augmented"]}))
    return train + out, {"added": len(out), "by_method": by_method}


def run_pipeline(cfg: RunConfig, *, log: Log = lambda _: None, tokenizer: Any = None) -> Prepared:
    """Every preparation step in memory; returns the splits and the filled report."""
    from hone.data.balance import balance_records
    from hone.data.clean import clean_records
    from hone.data.dedupe import dedupe_records, leakage
    from hone.data.split import carve, split_records

    data = cfg.data
    parts, report = read_and_validate(data, tokenizer)
    schema = report.schema or "text"
    log(f"read {report.rows} rows ({report.valid} valid, schema {schema}) from {', '.join(report.files)}")

    def each(fn):
        total: dict[str, Any] = {}
        for name in parts:
            parts[name], counts = fn(parts[name])
            total[name] = counts
        return total if len(total) > 1 else next(iter(total.values()))

    report.steps["clean"] = each(lambda recs: clean_records(recs, schema, data.clean))
    log(f"clean: {_sum(report.steps['clean'], 'kept')} kept")
    if data.pii.enabled:
        report.steps["pii"] = each(lambda recs: _redact(recs, schema, data))
        log(f"pii: {_sum(report.steps['pii'], 'records_changed')} records redacted")
    else:
        report.steps["pii"] = {"enabled": False}
    if data.dedupe.exact or data.dedupe.near:
        report.steps["dedupe"] = each(lambda recs: dedupe_records(recs, schema, data.dedupe))
        log(f"dedupe: removed {_sum(report.steps['dedupe'], 'exact_removed')} exact and "
            f"{_sum(report.steps['dedupe'], 'near_removed')} near duplicates")
    splits = _make_splits(parts, cfg, carve, split_records)
    splits, report.steps["leakage"] = leakage(splits, schema, data.split.leakage_threshold,
                                              drop=data.split.leakage == "drop")
    pairs = report.steps["leakage"]["pairs"]
    log(f"leakage: {pairs.get('validation', 0)} validation + {pairs.get('test', 0)} test rows are near-duplicates "
        f"of train ({'dropped' if data.split.leakage == 'drop' else 'reported'})")
    if data.shots:
        from hone.data.balance import sample_shots

        if schema != "classification":  # (it kept k rows in all, and the log said "k per label")
            raise DataError(f"data.shots keeps k examples per label: classification data only, not {schema}")
        splits["train"], report.steps["shots"] = sample_shots(splits["train"], data.shots, cfg.seed)
        log(f"shots: kept {report.steps['shots']['rows_after']} train rows ({data.shots} per label)")
    if data.augment.enabled:
        splits["train"], report.steps["augment"] = _augment(splits["train"], schema, cfg)
        log(f"augment: {report.steps['augment']['added']} rows added to train")
    splits["train"], report.steps["balance"] = balance_records(splits["train"], data.balance.strategy, cfg.seed)
    for name in ("validation", "test"):  # guard: synthetic rows never reach evaluation
        assert not any("augmented" in r.meta or "oversampled" in r.meta for r in splits[name])
    for name, recs in splits.items():
        labels, _, ratio = label_stats(recs)
        report.splits[name] = {"rows": len(recs), "labels": len(labels), "imbalance_ratio": ratio}
    metadata = _metadata(splits, report, cfg)
    return Prepared(splits, report, metadata)


def _sum(step: dict, key: str) -> int:
    return step[key] if key in step else sum(v.get(key, 0) for v in step.values())


def _make_splits(parts, cfg, carve, split_records) -> dict[str, list[Record]]:
    sc = cfg.data.split
    if "all" in parts:
        return split_records(parts["all"], sc, cfg.seed)
    if "validation" not in parts and "test" not in parts:  # both carved at once: each its share of the whole file
        return split_records(parts["train"], sc, cfg.seed)  # (carved one after the other, 1,000 rows gave 810/100/90)
    splits = {"train": parts["train"], "validation": parts.get("validation"), "test": parts.get("test")}
    for name in ("validation", "test"):
        share = getattr(sc, name)
        if splits[name] is None:
            if share > 0:
                splits["train"], splits[name] = carve(splits["train"], share, sc, cfg.seed)
            else:
                splits[name] = []
    return splits


def _metadata(splits: dict[str, list[Record]], report: DataReport, cfg: RunConfig) -> dict[str, Any]:
    labels = sorted({lab for recs in splits.values() for r in recs for lab in labels_of(r.data)})
    meta: dict[str, Any] = {
        "schema": report.schema, "multi_label": report.multi_label, "seed": cfg.seed,
        "labels": labels, "label2id": {lab: i for i, lab in enumerate(labels)},
        "split_sizes": {k: len(v) for k, v in splits.items()},
        "group_column": cfg.data.split.group_column,
        "balance": cfg.data.balance.strategy,
        "pii_redacted": cfg.data.pii.enabled,
    }
    if "class_weights" in report.steps.get("balance", {}):
        meta["class_weights"] = report.steps["balance"]["class_weights"]
    return meta


def _row(r: Record) -> dict[str, Any]:
    return {**r.data, META_KEY: r.meta} if r.meta else r.data


def write_prepared(prep: Prepared, cfg: RunConfig, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write splits, report, metadata, resolved config and manifest into ``out_dir`` atomically."""
    out_dir = Path(out_dir)
    inputs = [{"path": p, "sha256": artifacts.sha256_file(p) if Path(p).is_file() else None}
              for p in input_files(cfg.data).values()]
    with artifacts.staged_dir(out_dir, overwrite=overwrite) as stage:
        outputs = {}
        for name, fname in artifacts.SPLIT_FILES.items():
            artifacts.atomic_write_jsonl(stage / fname, (_row(r) for r in prep.splits.get(name, [])))
            outputs[fname] = artifacts.sha256_file(stage / fname)
        data_sha = hashlib.sha256("".join(outputs[f] for f in sorted(outputs)).encode()).hexdigest()
        artifacts.atomic_write_json(stage / artifacts.DATA_REPORT, prep.report.to_dict())
        artifacts.atomic_write_json(stage / artifacts.DATA_METADATA, {**prep.metadata, "data_sha256": data_sha})
        artifacts.atomic_write_text(stage / artifacts.RESOLVED_CONFIG, cfg.to_yaml())
        artifacts.atomic_write_json(stage / artifacts.MANIFEST, {
            "kind": "prepared-data", "inputs": inputs, "outputs": outputs, "data_sha256": data_sha,
            "seed": cfg.seed, "versions": artifacts.library_versions(),
        })
    prep.out_dir = out_dir
    return out_dir


def prepare(cfg: RunConfig, out_dir: str | Path, *, overwrite: bool = False, log: Log = lambda _: None) -> Prepared:
    """Run the whole preparation and write it; nothing is written if any step fails."""
    tokenizer = load_tokenizer(cfg.data.tokenizer)
    prep = run_pipeline(cfg, log=log, tokenizer=tokenizer)
    write_prepared(prep, cfg, out_dir, overwrite=overwrite)
    return prep


def prepare_once(cfg: RunConfig, run_dir: Path, *, log: Log = lambda _: None) -> tuple[Path, dict]:
    """The run directory's prepared dataset (prepared on first use) and its metadata."""
    data_dir = Path(run_dir) / artifacts.RUN_DATA
    if not (data_dir / artifacts.MANIFEST).exists():
        prepare(cfg, data_dir, log=log)
    else:
        _same_preparation(cfg, data_dir)
    return data_dir, json.loads((data_dir / artifacts.DATA_METADATA).read_text())


def _same_preparation(cfg: RunConfig, data_dir: Path) -> None:
    """A run directory's prepared data is reused (a resumed or repeated run) only when it was prepared from the
    same data section, seed and input files: another config used to train silently on the first one's data."""
    import yaml

    old = yaml.safe_load((data_dir / artifacts.RESOLVED_CONFIG).read_text()) or {}
    new = cfg.to_dict()
    changed = _diff({"data": old.get("data"), "seed": old.get("seed")}, {"data": new["data"], "seed": new["seed"]})
    if not changed:
        manifest = json.loads((data_dir / artifacts.MANIFEST).read_text())
        changed = [f"input file {i['path']} (its contents)" for i in manifest.get("inputs", [])
                   if i.get("sha256") and Path(i["path"]).is_file() and artifacts.sha256_file(i["path"]) != i["sha256"]]
    if changed:
        raise DataError(f"{data_dir} was prepared from another data configuration (changed: {', '.join(changed[:5])}"
                        f"{', ...' if len(changed) > 5 else ''}); train in a new run directory (-o), or delete "
                        f"{data_dir} to prepare this configuration's data there")


def _diff(a: Any, b: Any, key: str = "") -> list[str]:
    """Dotted keys whose values differ between two config trees."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{key}.{k}" if key else k)]
    return [] if a == b else [key]
