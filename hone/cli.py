"""The ``hone`` command line: one command per stage, the same core calls as the Python API.

Errors are translated once, here: a HoneError prints one line (or its list of problems) and
exits with code 2; nothing else is printed as a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from hone.errors import HoneError

# hone prints its own progress; transformers' load reports and weight-loading bars would bury
# it (both are read when transformers / huggingface_hub are first imported, so set them first)
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# deprecation notices between transformers and peft are for their developers, not hone's users
warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\.")

app = typer.Typer(help="hone: turn a general pre-trained language model into a domain specialist.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
config_app = typer.Typer(help="Validate and show run configurations.", no_args_is_help=True)
data_app = typer.Typer(help="Check and prepare datasets.", no_args_is_help=True)
model_app = typer.Typer(help="Inspect base models.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")

console = Console()
err_console = Console(stderr=True)


def guarded(fn):
    """Translate HoneError into one clear message on stderr and exit code 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HoneError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
    return wrapper


Overrides = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a config key: KEY=VALUE (dotted), repeatable.")]
Schema = Annotated[Optional[str], typer.Option(help="classification | chat | sharegpt | prompt_completion | instruction | preference | text (default: detected).")]
Fmt = Annotated[Optional[str], typer.Option("--format", help="jsonl | json | csv | tsv | parquet | txt (default: from the extension).")]
TextCol = Annotated[Optional[str], typer.Option(help="Column holding the text (CSV/TSV/Parquet/JSONL).")]
LabelCol = Annotated[Optional[str], typer.Option(help="Column holding the label.")]
PromptCol = Annotated[Optional[str], typer.Option(help="Column holding a generator's input (read as prompt; e.g. a ticket or a question).")]
CompletionCol = Annotated[Optional[str], typer.Option(help="Column holding a generator's target (read as completion; e.g. a summary or an answer).")]
Encoding = Annotated[Optional[str], typer.Option(help="Input encoding (default utf-8; e.g. cp1252, latin-1 only when you know).")]
TxtMode = Annotated[Optional[str], typer.Option(help="txt input: 'line' (one example per line) or 'document' (one per file).")]
LabelSep = Annotated[Optional[str], typer.Option(help="Split the label column on this separator (multi-label CSV).")]
GroupCol = Annotated[Optional[str], typer.Option(help="Group id column (conversation / customer): no group spans two splits.")]
Tokenizer = Annotated[Optional[str], typer.Option(help="Tokenizer for token-length statistics (e.g. minilm, a local dir, a hub id).")]
MaxLen = Annotated[Optional[int], typer.Option(help="Max length in tokens to compare against.")]


def _data_flags(**flags: Any) -> dict[str, Any]:
    names = ("schema", "format", "text_column", "label_column", "prompt_column", "completion_column", "encoding",
             "txt_mode", "multi_label_sep", "tokenizer", "max_length")  # CLI flag = data.* key
    out = {k: v for k, v in flags.items() if k in names and v is not None}
    if flags.get("group_column"):
        out["split"] = {"group_column": flags["group_column"]}
    return out


def _build_config(source: Optional[Path], data_flags: dict[str, Any], overrides: list[str] | None,
                  seed: Optional[int] = None, extra: dict[str, Any] | None = None):
    """A config from a YAML file or a data file, CLI flags, then ``--set`` overrides."""
    from hone.config import load_config

    flat = [f"data.{k}={json.dumps(v)}" for k, v in data_flags.items() if k != "split"]
    if "split" in data_flags:
        flat.append(f"data.split.group_column={json.dumps(data_flags['split']['group_column'])}")
    if seed is not None:
        flat.append(f"seed={seed}")
    flat += [f"{k}={json.dumps(v)}" for k, v in (extra or {}).items()]
    if source is not None and source.suffix.lower() in (".yaml", ".yml"):
        return load_config(source, [*flat, *(overrides or [])])
    base = {"data": {"path": str(source)}} if source is not None else {}
    return load_config(base, [*flat, *(overrides or [])])


@app.command()
def version() -> None:
    """Print hone's version, the versions of the libraries it uses, and whether its native CPU kernels are built."""
    from hone.artifacts import library_versions

    from hone.model import native

    kernels = native.status()  # builds them on first use: the versions below then say "on" / "off" too
    for k, v in library_versions().items():
        console.print(f"{k} {v}", highlight=False)
    console.print(f"native CPU kernels {kernels}", highlight=False)


@config_app.command("check")
@guarded
def config_check(file: Path, overrides: Overrides = None,
                 show: Annotated[bool, typer.Option(help="Print the resolved config as YAML.")] = False) -> None:
    """Validate a run config (YAML + --set overrides); every error is listed with its dotted key."""
    from hone.config import load_config

    cfg = load_config(file, overrides or [])
    if show:
        console.print(cfg.to_yaml(), highlight=False, end="")
    else:
        console.print(f"[green]ok[/] {file}: valid config (method {cfg.method.name}, model {cfg.model.name})")


@data_app.command("check")
@guarded
def data_check(file: Path, schema: Schema = None, format: Fmt = None, text_column: TextCol = None,
               label_column: LabelCol = None, prompt_column: PromptCol = None, completion_column: CompletionCol = None,
               encoding: Encoding = None, txt_mode: TxtMode = None,
               multi_label_sep: LabelSep = None, tokenizer: Tokenizer = None, max_length: MaxLen = None,
               json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the report as JSON here.")] = None,
               ) -> None:
    """Validate a data file and print statistics; exit code 2 if any row is invalid."""
    from hone.artifacts import atomic_write_json
    from hone.data.check import check_file
    from hone.data.prepare import load_tokenizer
    from hone.data.show import render

    d = _build_config(file, _data_flags(**locals()), None).data
    report = check_file(str(file), d, tokenizer=load_tokenizer(d.tokenizer))
    render(report, console)
    if json_out:
        atomic_write_json(json_out, report.to_dict())
    if not report.ok:
        err_console.print(f"[bold red]error:[/] {report.error_count} error(s) in {file}", highlight=False)
        raise typer.Exit(2)


@data_app.command("prepare")
@guarded
def data_prepare(source: Annotated[Path, typer.Argument(help="A run config (YAML) or a data file.")],
                 out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output directory, created atomically (default: $HONE_HOME/data/NAME).")] = None,
                 schema: Schema = None, format: Fmt = None, text_column: TextCol = None,
                 label_column: LabelCol = None, prompt_column: PromptCol = None,
                 completion_column: CompletionCol = None, encoding: Encoding = None, txt_mode: TxtMode = None,
                 multi_label_sep: LabelSep = None, group_column: GroupCol = None,
                 tokenizer: Tokenizer = None, max_length: MaxLen = None,
                 no_pii: Annotated[bool, typer.Option("--no-pii", help="Do not redact PII (on by default).")] = False,
                 augment: Annotated[bool, typer.Option(help="Augment the training split (data.augment).")] = False,
                 balance: Annotated[Optional[str], typer.Option(help="none | class_weights | oversample | undersample")] = None,
                 seed: Annotated[Optional[int], typer.Option(help="Random seed (splits, augmentation, sampling).")] = None,
                 overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
                 overrides: Overrides = None) -> None:
    """Validate, clean, redact PII, de-duplicate, split (and optionally augment / balance) a dataset."""
    from hone.data.prepare import prepare
    from hone.data.show import render

    extra: dict[str, Any] = {}
    if no_pii:
        extra["data.pii.enabled"] = False
    if augment:
        extra["data.augment.enabled"] = True
    if balance:
        extra["data.balance.strategy"] = balance
    cfg = _build_config(source, _data_flags(**locals()), overrides, seed, extra)
    if out is None:
        from hone.settings import get_settings

        out = get_settings().root / "data" / source.stem
    prep = prepare(cfg, out, overwrite=overwrite, log=lambda m: console.print(f"[dim]•[/] {m}", highlight=False))
    render(prep.report, console)
    console.print(f"[green]wrote[/] {out}/ (train/validation/test.jsonl, data_report.json, metadata.json, manifest.json)")


@data_app.command("redact")
@guarded
def data_redact(texts: Annotated[list[str], typer.Argument(help="Text(s) to redact; '-' reads lines from stdin.")]) -> None:
    """Show what PII redaction does to some text (one pseudonym scope for all arguments)."""
    from hone.data.pii import Redactor

    red = Redactor()
    scope = red.scope()
    lines = sys.stdin.read().splitlines() if texts == ["-"] else texts
    for t in lines:
        console.print(red.redact(t, scope), highlight=False, markup=False)


def _log(msg: str) -> None:
    console.print(f"[dim]•[/] {msg}", highlight=False)


RunDir = Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default: $HONE_HOME/runs/NAME-TIME).")]


@app.command("train")
@guarded
def train_cmd(config: Annotated[Path, typer.Argument(help="Run config (YAML).")], out: RunDir = None,
              overrides: Overrides = None) -> None:
    """Prepare the data and fine-tune; writes the artifact (and checkpoints) into the run directory.

    With train.save_every set, running it again on the same run directory resumes from the latest checkpoint.
    """
    from hone.config import load_config
    from hone.pipeline import default_run_dir, resolve_task
    from hone.train.classify import train_classifier
    from hone.train.generative import train_generator

    cfg = load_config(config, overrides or [])
    run_dir = out or default_run_dir(config.stem)
    trainer = train_generator if resolve_task(cfg, run_dir, _log) == "generate" else train_classifier
    res = trainer(cfg, run_dir, log=_log).result
    console.print(f"[green]trained[/] {res.steps} steps in {res.wall_time_s:.0f} s ({res.samples_per_s:.3g} samples/s); "
                  f"artifact: {run_dir / 'artifact'}")


@app.command("run")
@guarded
def run_cmd(config: Annotated[Path, typer.Argument(help="Run config (YAML).")], out: RunDir = None,
            overrides: Overrides = None) -> None:
    """prepare -> train -> evaluate against baselines -> report, in one run directory."""
    from hone.config import load_config
    from hone.pipeline import default_run_dir

    _run_and_report(load_config(config, overrides or []), out or default_run_dir(config.stem))


def _run_and_report(cfg, run_dir: Path) -> None:
    from hone.pipeline import headline, run

    files = run(cfg, run_dir, log=_log)
    for line in headline(files["json"]):
        console.print(line, highlight=False)
    console.print(f"[green]report[/] {files['html']}  (also {files['md'].name}, {files['json'].name})")


@app.command("quickstart")
@guarded
def quickstart_cmd(out: RunDir = None, overrides: Overrides = None,
                   task: Annotated[str, typer.Option(help="intent: MiniLM intent router on the telecom tickets; "
                                                          "reply: SmolLM2 + LoRA reply suggestions on the telecom chats.")] = "intent") -> None:
    """Fine-tune an embedded model on a bundled telecom sample and report its gain over the base model."""
    from hone.pipeline import QUICKSTARTS, default_run_dir, quickstart_config

    if task not in QUICKSTARTS:
        raise HoneError(f"--task must be one of {', '.join(QUICKSTARTS)}")
    cfg = quickstart_config(overrides or [], task=task)
    run_dir = out or default_run_dir(f"quickstart-{task}" if task != "intent" else "quickstart")
    console.print(f"hone quickstart: {cfg.model.name} + {cfg.method.name} on the telecom sample -> {run_dir}")
    _run_and_report(cfg, run_dir)


@app.command("eval")
@guarded
def eval_cmd(artifact: Path, data: Annotated[Path, typer.Option(help="Labelled data to evaluate on (any format hone reads).")],
             out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report directory (default: ARTIFACT/../eval-DATA).")] = None,
             text_column: TextCol = None, label_column: LabelCol = None,
             baselines: Annotated[bool, typer.Option(help="Also compute the zero-/few-shot baselines.")] = True,
             max_examples: Annotated[Optional[int], typer.Option(help="Generators: score at most this many examples (seeded).")] = None,
             overrides: Overrides = None) -> None:
    """Evaluate an artifact on a labelled file (classifier) or a chat / prompt-completion file (generator)."""
    from hone.errors import DataError
    from hone.eval.report import write_reports
    from hone.eval.suite import evaluate_classifier
    from hone.pipeline import headline
    from hone.serve.engine import Classifier

    if _is_generator(artifact):
        from hone.eval.gen_suite import evaluate_artifact

        report = evaluate_artifact(artifact, data, baselines=baselines, max_examples=max_examples,
                                   overrides=overrides or [], log=_log)
        report["title"] = f"{artifact} on {data.name}"
        files = write_reports(out or artifact.parent / f"eval-{data.stem}", report)
        for line in headline(files["json"]):
            console.print(line, highlight=False)
        console.print(f"[green]report[/] {files['html']}")
        return
    clf = Classifier.load(artifact)
    trained = _artifact_config(artifact)
    if trained is not None:  # the columns it was trained on, where the file has them (else hone's text / label)
        from hone.data.read import columns_present

        cols = columns_present(data, {"text_column": trained.data.text_column,
                                      "label_column": trained.data.label_column})
        text_column, label_column = text_column or cols.get("text_column"), label_column or cols.get("label_column")
    texts, labels = _read_labelled(data, text_column, label_column)
    unknown = sorted({lab for row in labels for lab in (row if isinstance(row, list) else [row])
                      if lab not in clf.labels})  # (multi-label rows hold lists)
    if unknown:
        raise DataError(f"{data}: label(s) the model does not know: {', '.join(unknown[:10])}")
    from hone.config import load_config

    # eval.* overrides apply (they were ignored); without training data zero-shot is the baseline there is
    cfg = load_config(None, ["eval.forgetting=false", "eval.baselines=[zero_shot]", *(overrides or [])]).eval
    if not baselines:
        cfg = cfg.model_copy(update={"baselines": []})
    if cfg.oos_label is None and clf.threshold is not None:  # (its abstain label need not be one of the classes)
        cfg = cfg.model_copy(update={"oos_label": clf.abstain_label})  # score the abstention predict applies
    seed = trained.seed if trained is not None else 0  # the run's seed: its bootstrap, as hone run drew it
    report = evaluate_classifier(clf, texts, labels, cfg=cfg, seed=seed, base_model=clf.manifest["base_model"],
                                 revision=clf.manifest.get("revision"), log=_log)
    report["title"] = f"{artifact} on {data.name}"
    files = write_reports(out or artifact.parent / f"eval-{data.stem}", report)
    for line in headline(files["json"]):
        console.print(line, highlight=False)
    console.print(f"[green]report[/] {files['html']}")


def _is_generator(artifact: Path) -> bool:
    from hone import artifacts

    man = artifact / artifacts.MANIFEST
    return man.is_file() and json.loads(man.read_text()).get("kind") == "generator"


def _artifact_config(artifact: Path):
    """The run config an artifact was trained with (``config.yaml`` beside its manifest), or None."""
    from hone import artifacts
    from hone.config import load_config

    path = artifact / artifacts.RESOLVED_CONFIG
    try:
        return load_config(path) if path.is_file() else None
    except HoneError:  # written by another version of hone: the flags and defaults apply
        return None


def _read_labelled(path: Path, text_column, label_column) -> tuple[list[str], list[str]]:
    from hone.data.check import read_valid

    recs, _ = read_valid(path, schema="classification", text_column=text_column, label_column=label_column)
    return [r.data["text"] for r in recs], [r.data["label"] for r in recs]


@app.command("predict")
@guarded
def predict_cmd(artifact: Path, texts: Annotated[Optional[list[str]], typer.Argument(help="Texts to classify.")] = None,
                file: Annotated[Optional[Path], typer.Option("--file", "-f", help="One text per line, or a data file with a text column.")] = None,
                top_k: Annotated[int, typer.Option(help="How many labels to list per text.")] = 3,
                text_column: TextCol = None) -> None:
    """Classify texts; prints one JSON line per text with label, score and top-k."""
    from hone.serve.engine import load

    if _is_generator(artifact):
        raise HoneError(f"{artifact}: a generator artifact, not a classifier: use hone generate")
    items = list(texts or [])
    if file is not None:
        trained = _artifact_config(artifact) if text_column is None and file.suffix.lower() not in (".txt", "") else None
        if trained is not None:  # the column it was trained on, where the file has it
            from hone.data.read import columns_present

            text_column = columns_present(file, {"text_column": trained.data.text_column}).get("text_column")
        items += _read_texts(file, text_column)
    if not items:
        raise HoneError("give texts as arguments or --file")
    for res in load(artifact).predict(items, top_k=top_k):
        print(json.dumps(res, ensure_ascii=False))


def _read_texts(path: Path, text_column) -> list[str]:
    from hone.data.read import read_rows

    if path.suffix.lower() in (".txt", ""):
        return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    problems: list = []
    out = [r.obj.get("text") for r in read_rows(path, problems, text_column=text_column) if isinstance(r.obj, dict)]
    if problems:
        raise HoneError(str(problems[0]))
    return [t for t in out if isinstance(t, str) and t.strip()]


@app.command("generate")
@guarded
def generate_cmd(artifact: Annotated[str, typer.Argument(help="A hone generator artifact (or a model name / directory).")],
                 prompt: Annotated[Optional[str], typer.Option("--prompt", "-p", help="One user message; the reply streams to the terminal.")] = None,
                 chat: Annotated[Optional[Path], typer.Option("--chat", help="JSONL of {\"messages\": [...]}: one JSON line with the reply per conversation.")] = None,
                 max_new_tokens: Annotated[Optional[int], typer.Option(help="Default: the artifact's.")] = None,
                 temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
                 template: Annotated[Optional[str], typer.Option(help="Named chat template for a plain model without one.")] = None,
                 precision: Annotated[str, typer.Option(help="auto (bf16 where the hardware runs it natively, as the evaluation does; else fp32), fp32 or bf16.")] = "auto") -> None:
    """Generate with a fine-tuned model, using the chat template it was trained with."""
    if precision not in ("auto", "fp32", "bf16"):
        raise HoneError(f"--precision: expected auto, fp32 or bf16, got {precision!r}")
    gen = _generator(artifact, template, precision)
    if (prompt is None) == (chat is None):
        raise HoneError("give exactly one of --prompt or --chat")
    if prompt is not None:
        for piece in gen.stream(prompt, max_new_tokens=max_new_tokens, temperature=temperature):
            print(piece, end="", flush=True)
        print()
        return
    convs = _read_chats(chat)
    for conv, g in zip(convs, gen.generate(convs, max_new_tokens=max_new_tokens, temperature=temperature), strict=True):
        print(json.dumps({"messages": conv, "reply": g.text, "stopped": g.stopped}, ensure_ascii=False))


def _generator(name: str, template: str | None, precision: str = "auto"):
    from hone import artifacts
    from hone.data.chat import setup_tokenizer
    from hone.serve.generator import Generator
    from hone.train.loop import inference_dtype, to_inference_device

    dtype = inference_dtype(precision)
    if (Path(name) / artifacts.MANIFEST).is_file():
        return Generator.load(name, dtype=dtype)
    from hone.model.load import load_lm

    model, tok = load_lm(name, dtype=dtype)
    model = to_inference_device(model)
    if not getattr(model.config, "is_encoder_decoder", False):
        setup_tokenizer(tok, template, where=name)
    return Generator(model, tok)


def _read_chats(path: Path) -> list[list[dict]]:
    from hone.data.read import json_lines

    convs = []
    for n, obj in json_lines(path):
        msgs = obj.get("messages") if isinstance(obj, dict) else None
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m and "content" in m for m in msgs):
            raise HoneError(f"{path}:{n}: messages: expected a list of {{role, content}} objects")
        convs.append(msgs)
    if not convs:
        raise HoneError(f"{path}: no conversations")
    return convs


@app.command("export")
@guarded
def export_cmd(artifact: Path, out: Annotated[Path, typer.Option("--out", "-o", help="Export directory (created atomically).")],
               merge: Annotated[bool, typer.Option(help="Merge adapters into the base weights.")] = True,
               format: Annotated[Optional[list[str]], typer.Option("--format", "-f", help="transformers (default), onnx, gguf; repeatable.")] = None,
               check: Annotated[bool, typer.Option(help="Round-trip check: the export must generate what the artifact does.")] = True,
               overwrite: Annotated[bool, typer.Option(help="Replace an existing export directory (only once the new export succeeded).")] = False) -> None:
    """Export a generator artifact (merged transformers checkpoint, ONNX, GGUF) and check the round trip."""
    from hone.export import export

    report = export(artifact, out, merge=merge, formats=tuple(format or ["transformers"]), check=check,
                    overwrite=overwrite, log=_log)
    for fmt, r in report.items():
        if isinstance(r, dict):
            console.print(f"[green]{fmt}[/] {r.get('path')}  round trip: {r.get('round_trip', 'not checked')}", highlight=False)


@data_app.command("lint")
@guarded
def data_lint(file: Path, model: Annotated[str, typer.Option(help="Model whose tokenizer and chat template to use.")] = "smollm2",
              template: Annotated[Optional[str], typer.Option(help="Named chat template (when the tokenizer has none).")] = None,
              max_length: Annotated[int, typer.Option(help="Training max_length in tokens.")] = 512,
              train_on: Annotated[str, typer.Option(help="assistant (prompt masking) or all.")] = "assistant") -> None:
    """Chat-data lint: role order, empty turns, lengths vs max_length, trained-token mask, EOS trained."""
    from hone.data.chat import setup_tokenizer, to_messages
    from hone.data.check import read_valid
    from hone.data.lint import lint_conversations
    from hone.model.load import load_tokenizer

    recs, rep = read_valid(file)
    if rep.schema not in ("chat", "prompt_completion", "instruction"):
        raise HoneError(f"{file}: lint checks conversations; this file holds {rep.schema} data")
    tok = load_tokenizer(model)
    notes = setup_tokenizer(tok, template, where=model)
    convs = [to_messages(r.data, rep.schema) for r in recs]
    lint, _ = lint_conversations(tok, convs, max_length=max_length, train_on=train_on,
                                 where=[r.where for r in recs], notes=notes)
    console.print(lint.to_markdown(), highlight=False, markup=False)
    if not lint.ok:
        raise typer.Exit(1)


@model_app.command("info")
@guarded
def model_info_cmd(name: Annotated[str, typer.Argument(help="minilm, smollm2, a local directory or a hub id.")],
                   data: Annotated[Optional[Path], typer.Option(help="Estimate time per epoch on this data file (a generator trains on its conversations).")] = None,
                   examples: Annotated[Optional[int], typer.Option(help="Estimate for this many examples.")] = None,
                   task: Annotated[str, typer.Option(help="auto (a causal / seq2seq LM: generate, else classify), classify or generate.")] = "auto",
                   method: Annotated[Optional[str], typer.Option(help="Method the estimate trains with: full, head, freeze, lora, ia3 or prompt_tuning (default: full for a classifier, lora for a generator).")] = None,
                   batch_size: Annotated[Optional[int], typer.Option(help="Default: 32 for a classifier, 8 for a generator.")] = None,
                   max_length: Annotated[Optional[int], typer.Option(help="Tokens; default: 128 for a classifier, 512 for a generator.")] = None,
                   json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Architecture, parameter counts per method, adapter targets, and a measured time/memory estimate."""
    from hone.model.info import model_info, read_examples, resolve_task

    task = resolve_task(name, task)
    texts = convs = None
    if data and task == "classify":
        texts = _read_texts(data, None)
    elif data:
        convs, texts = read_examples(data)
    info = model_info(name, task=task, n_examples=examples, texts=texts, conversations=convs, batch_size=batch_size,
                      max_length=max_length, method=method)
    if json_out:
        print(json.dumps(info, indent=2))
        return
    console.print(f"[bold]{info['name']}[/] ({info['architecture']}, {info['layers']} layers, hidden "
                  f"{info['hidden_size']}, vocab {info['vocab_size']}, max positions {info['max_positions']}; "
                  f"as a {'generator' if task == 'generate' else 'classifier'})", highlight=False)
    console.print(f"path: {info['path']}\ntokenizer: {info['tokenizer']}", highlight=False)
    for m, pc in info["parameters"].items():
        console.print(f"  {m:>13}: {pc['trainable']:>12,} trainable of {pc['total']:,} "
                      f"({pc['trainable'] / pc['total']:.2%})", highlight=False)
    console.print(f"adapter (LoRA / IA3) target modules: {', '.join(info['adapter_targets'])}", highlight=False)
    if "estimate" in info:
        e = info["estimate"]
        console.print(f"estimate ({e['method']}, {e['trains']}, {e['precision']}, batch {e['batch_size']}): "
                      f"{e['seconds_per_step']} s/step x "
                      f"{e['steps_per_epoch']} steps = {e['seconds_per_epoch']} s per epoch; peak RSS "
                      f"{e['peak_rss_mb']} MB — {e['note']}", highlight=False)


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    import signal

    # SIGTERM (timeout, CI cancelling, kill) unwinds like Ctrl-C, so a half-written output is removed: by default
    # the process ended at once and left its staging folder behind
    signal.signal(signal.SIGTERM, _terminated)
    app()


if __name__ == "__main__":
    main()
