"""The ``Record`` type and the dataset schemas hone understands.

Every reader yields raw rows; :func:`normalize` turns one raw row into the canonical form of
its schema (listed below) and reports each problem with the field path.  Later stages only
ever see canonical rows, so they never branch on input formats.

Canonical forms (what ``Record.data`` holds, and what prepared JSONL lines contain):

- ``classification``: ``{"text": str, "label": str | list[str]}`` (a list = multi-label)
- ``chat``: ``{"messages": [{"role": "system"|"user"|"assistant", "content": str,
  "weight"?: 0|1}]}`` — OpenAI's fine-tuning format; ShareGPT ``conversations`` are
  converted to it
- ``prompt_completion``: ``{"prompt": str, "completion": str}``
- ``instruction``: ``{"instruction": str, "input": str, "output": str}`` (Alpaca)
- ``preference``: ``{"prompt": str | messages, "chosen": str | messages, "rejected": ...}``
- ``text``: ``{"text": str}`` raw text for continued pre-training
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import regex  # Unicode categories (norm_text: punctuation goes, symbols and emoji stay)

Schema = Literal["classification", "chat", "prompt_completion", "instruction", "preference", "text"]
SCHEMAS: tuple[str, ...] = ("classification", "chat", "prompt_completion", "instruction", "preference", "text")
INPUT_SCHEMAS: tuple[str, ...] = (*SCHEMAS, "sharegpt")
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "bot": "assistant", "model": "assistant"}
META_KEY = "_hone"  # provenance written beside the canonical fields in prepared files


@dataclass
class Record:
    """One example: canonical ``data`` plus where it came from."""

    data: dict[str, Any]
    source: str
    line: int
    meta: dict[str, Any] = field(default_factory=dict)  # group, augmented, oversampled, ...

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class Problem:
    """A validation finding. ``line`` is None for whole-dataset findings."""

    severity: Literal["error", "warning"]
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else f"{self.file}"
        return f"{where}: {self.field}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "file": self.file, "line": self.line,
                "field": self.field, "message": self.message}


_PUNCT = regex.compile(r"[^\P{P}_]+")  # (it was every non-word character: "👍" and "👎", "C++" and "C" were one row)
# the same for ASCII text as one translate (a quarter of the regex's time: `hone data check` hashes every row)
_ASCII_PUNCT = bytes(32 if c < 128 and _PUNCT.fullmatch(chr(c)) else c for c in range(256))


def norm_text(text: str) -> str:
    """The text exact de-duplication compares (``hone data check`` warns, ``prepare`` drops): case-folded, punctuation
    and extra whitespace removed (symbols and emoji kept)."""
    t = text.casefold()
    if t.isascii():
        return " ".join(t.encode().translate(_ASCII_PUNCT).decode().split())
    return " ".join(_PUNCT.sub(" ", t).split())


def detect_schema(obj: Any) -> str | None:
    """Guess the schema of one raw row from its keys (None if nothing fits)."""
    if isinstance(obj, str):
        return "text"
    if not isinstance(obj, dict):
        return None
    keys = set(obj)
    if "messages" in keys:
        return "chat"
    if "conversations" in keys:
        return "sharegpt"
    if {"chosen", "rejected", "preferred_output", "non_preferred_output"} & keys:  # (the last two: OpenAI's DPO)
        return "preference"
    if "instruction" in keys:
        return "instruction"
    if "completion" in keys or ("prompt" in keys and "output" not in keys):
        return "prompt_completion"
    if "label" in keys or "labels" in keys:
        return "classification"
    if "text" in keys:
        return "text"
    return None


# ---------------------------------------------------------------- normalization

Issues = list[tuple[str, str]]  # (field path, message)


def _req_str(obj: dict, key: str, issues: Issues, *, path: str | None = None, allow_empty: bool = False) -> str | None:
    path = path or key
    if key not in obj or obj[key] is None:
        issues.append((path, "missing"))
        return None
    val = obj[key]
    if not isinstance(val, str):
        issues.append((path, f"must be a string, got {type(val).__name__}"))
        return None
    if not allow_empty and not val.strip():
        issues.append((path, "is empty"))
        return None
    return val


def _norm_messages(msgs: Any, issues: Issues, path: str, *, require_assistant: bool = True,
                   order: bool = True) -> list[dict] | None:
    if msgs is None:
        issues.append((path, "missing"))
        return None
    if not isinstance(msgs, list):
        issues.append((path, f"must be a list of messages, got {type(msgs).__name__}"))
        return None
    if not msgs:
        issues.append((path, "is empty"))
        return None
    out: list[dict] = []
    for i, m in enumerate(msgs):
        p = f"{path}[{i}]"
        if not isinstance(m, dict):
            issues.append((p, f"must be an object with role and content, got {type(m).__name__}"))
            continue
        role = m.get("role")
        if role is None:
            issues.append((f"{p}.role", "missing"))
        elif role not in ROLES:
            issues.append((f"{p}.role", f"unknown role {role!r} (expected one of {', '.join(ROLES)})"))
        content = _req_str(m, "content", issues, path=f"{p}.content")
        msg: dict[str, Any] = {"role": role, "content": content}
        if "weight" in m:
            w = m["weight"]
            if isinstance(w, bool) or w not in (0, 1):
                issues.append((f"{p}.weight", f"must be 0 or 1, got {w!r}"))
            elif role != "assistant":
                issues.append((f"{p}.weight", "is only allowed on assistant messages"))
            else:
                msg["weight"] = int(w)
        extra = set(m) - {"role", "content", "weight", "name"}
        if extra:
            issues.append((p, f"unknown key(s) {', '.join(sorted(extra))}"))
        out.append(msg)
    if order:
        _check_order(out, issues, path, require_assistant)
    return out


def _check_order(msgs: list[dict], issues: Issues, path: str, require_assistant: bool,
                 where: list[str] | None = None) -> None:
    """Role order; ``where`` names each message (default ``path[i]``: a conversation joined from parts names them
    in their own parts)."""
    roles = [m["role"] for m in msgs]
    if any(r not in ROLES for r in roles):
        return
    where = where or [f"{path}[{i}]" for i in range(len(msgs))]
    prev = None
    for i, r in enumerate(roles):
        if r == "system" and i != 0:
            issues.append((f"{where[i]}.role", "system message out of order (only allowed first)"))
        elif r != "system" and r == prev:
            issues.append((f"{where[i]}.role", f"roles out of order: two {r} messages in a row"))
        elif r == "assistant" and prev in (None, "system"):
            issues.append((f"{where[i]}.role", "roles out of order: conversation must start with a user message"))
        prev = r
    if require_assistant and "assistant" not in roles:
        issues.append((path, "no assistant turn"))


def _norm_label(obj: dict, issues: Issues, label_key: str) -> str | list[str] | None:
    val = obj.get(label_key)
    if val is None:
        issues.append((label_key, "missing"))
        return None
    if isinstance(val, bool) or not isinstance(val, (str, int, list)):
        issues.append((label_key, f"must be a string (or a list of strings for multi-label), got {type(val).__name__}"))
        return None
    if isinstance(val, int):
        return str(val)
    if isinstance(val, str):
        if not val.strip():
            issues.append((label_key, "empty label"))
            return None
        return val.strip()
    labels = []
    for i, v in enumerate(val):
        if not isinstance(v, (str, int)) or isinstance(v, bool) or not str(v).strip():
            issues.append((f"{label_key}[{i}]", "empty label" if v == "" else f"must be a non-empty string, got {v!r}"))
            return None
        labels.append(str(v).strip())
    if not labels:
        issues.append((label_key, "empty label list"))
        return None
    return labels


def _text_or_messages(obj: dict, key: str, issues: Issues, path: str | None = None) -> Any:
    """A string, or a list of messages (their order checked by the caller)."""
    val = obj.get(key)
    if isinstance(val, list):
        return _norm_messages(val, issues, path or key, order=False)
    return _req_str(obj, key, issues, path=path)


def _as_list(x: Any, role: str) -> list[dict]:
    return [{"role": role, "content": x}] if isinstance(x, str) else x


def _turns(msgs: list[dict]) -> list[tuple[Any, Any]]:
    """Messages as (role, content) pairs, for comparing conversations whatever other keys they carry."""
    return [(m["role"], m["content"]) for m in msgs]


def _norm_preference(obj: dict, issues: Issues) -> dict[str, Any]:
    """``{prompt, chosen, rejected}`` with the replies alone in ``chosen`` / ``rejected``, from any of the shapes
    preference data comes in:

    * strings: ``{"prompt": "...", "chosen": "...", "rejected": "..."}``;
    * TRL's conversational rows: ``prompt`` the messages up to the reply, ``chosen`` / ``rejected`` the assistant
      message(s) that continue them;
    * whole conversations in ``chosen`` / ``rejected`` (UltraFeedback, HH-RLHF as messages), with or without a
      ``prompt`` repeating their last user turn: the shared conversation up to the replies becomes the prompt,
      so that it is not trained on twice;
    * OpenAI's DPO format: ``{"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output":
      [...]}`` (other keys of ``input``, such as ``tools``, are not used).
    """
    if "preferred_output" in obj or "non_preferred_output" in obj:
        inp = obj.get("input")
        prompt: Any = None
        if not isinstance(inp, dict):
            issues.append(("input", "must be an object with messages (OpenAI's DPO format)"))
        else:
            prompt = _norm_messages(inp.get("messages"), issues, "input.messages", order=False)
        keys = {"chosen": "preferred_output", "rejected": "non_preferred_output"}
        chosen, rejected = (_norm_messages(obj.get(k), issues, k, order=False) for k in keys.values())
        names = {"prompt": "input.messages", **keys}
    else:
        prompt = _text_or_messages(obj, "prompt", issues) if obj.get("prompt") is not None else None
        chosen, rejected = _text_or_messages(obj, "chosen", issues), _text_or_messages(obj, "rejected", issues)
        names = {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}
    if chosen is None or rejected is None or issues:
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    replies = {}
    conversation = None  # the messages before the replies, where chosen / rejected hold whole conversations
    for key, val in (("chosen", chosen), ("rejected", rejected)):
        msgs = _as_list(val, "assistant")
        last = max((i for i, m in enumerate(msgs) if m["role"] != "assistant"), default=-1)
        if last >= 0:
            if conversation is None:
                conversation = msgs[:last + 1]
            elif _turns(msgs[:last + 1]) != _turns(conversation):
                issues.append((names[key], f"must continue the same conversation as {names['chosen']}: the "
                                           "messages before the replies differ"))
            val = msgs[last + 1:]
            if not val:
                issues.append((names[key], "no assistant reply after the conversation"))
        elif conversation is not None:
            issues.append((names[key], f"holds only the reply, where {names['chosen']} holds the whole conversation"))
        replies[key] = val
    if conversation is not None:
        if prompt is not None:  # e.g. UltraFeedback's prompt: the conversation's last user turn, or all of it
            same = (prompt == conversation[-1]["content"] if isinstance(prompt, str) else
                    _turns(prompt) == _turns(conversation))
            if not same:
                issues.append((names["prompt"], f"differs from the conversation that {names['chosen']} continues"))
        prompt = conversation
    if prompt is None:
        issues.append((names["prompt"], "missing"))
    if issues:
        return {"prompt": prompt, "chosen": replies["chosen"], "rejected": replies["rejected"]}
    p_msgs = _as_list(prompt, "user")
    p_where = [names["prompt"] if isinstance(prompt, str) else f"{names['prompt']}[{i}]" for i in range(len(p_msgs))]
    for key in ("chosen", "rejected"):
        r_msgs = _as_list(replies[key], "assistant")
        r_where = [names[key] if isinstance(replies[key], str) else f"{names[key]}[{i}]" for i in range(len(r_msgs))]
        if conversation is not None and isinstance(replies[key], list):  # the replies' indices in the original
            r_where = [f"{names[key]}[{len(conversation) + i}]" for i in range(len(r_msgs))]
        _check_order(p_msgs + r_msgs, issues, names[key], True, p_where + r_where)
    issues[:] = list(dict.fromkeys(issues))  # a prompt's own problem is found once per reply
    return {"prompt": prompt, "chosen": replies["chosen"], "rejected": replies["rejected"]}


def normalize(obj: Any, schema: str, *, label_key: str = "label") -> tuple[dict[str, Any] | None, Issues]:
    """Canonical form of one raw row for ``schema`` plus every problem found in it."""
    issues: Issues = []
    if schema == "text" and isinstance(obj, str):
        obj = {"text": obj}
    if not isinstance(obj, dict):
        return None, [("(row)", f"must be a JSON object, got {type(obj).__name__}")]
    data: dict[str, Any] | None
    if schema == "classification":
        if label_key == "label" and "label" not in obj and "labels" in obj:
            label_key = "labels"
        text, label = _req_str(obj, "text", issues), _norm_label(obj, issues, label_key)
        data = {"text": text, "label": label}
    elif schema == "chat":
        data = {"messages": _norm_messages(obj.get("messages"), issues, "messages")}
    elif schema == "sharegpt":
        conv = obj.get("conversations")
        msgs = None
        if isinstance(conv, list):
            msgs = []
            for i, turn in enumerate(conv):
                if not isinstance(turn, dict):
                    issues.append((f"conversations[{i}]", "must be an object with from and value"))
                    continue
                src = turn.get("from")
                role = SHAREGPT_ROLES.get(str(src).lower()) if src is not None else None
                if role is None:
                    issues.append((f"conversations[{i}].from", f"unknown role {src!r}"))
                msgs.append({"role": role or str(src), "content": turn.get("value")})
        data = {"messages": _norm_messages(msgs if msgs is not None else conv, issues, "conversations")}
    elif schema == "prompt_completion":
        data = {"prompt": _req_str(obj, "prompt", issues, allow_empty=True),
                "completion": _req_str(obj, "completion", issues)}
    elif schema == "instruction":
        inp = obj.get("input", "")
        if inp is None:
            inp = ""
        if not isinstance(inp, str):
            issues.append(("input", f"must be a string, got {type(inp).__name__}"))
        data = {"instruction": _req_str(obj, "instruction", issues), "input": inp,
                "output": _req_str(obj, "output", issues)}
    elif schema == "preference":
        data = _norm_preference(obj, issues)
    elif schema == "text":
        data = {"text": _req_str(obj, "text", issues)}
    else:
        raise ValueError(f"unknown schema {schema!r}")
    return (None if issues else data), issues


def output_schema(schema: str) -> str:
    """Schema of the canonical rows produced from an input schema."""
    return "chat" if schema == "sharegpt" else schema


# ---------------------------------------------------------------- text access

def _map_messages(msgs: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(msgs, list):
        return [{**m, "content": fn(m["content"])} for m in msgs]
    return fn(msgs)


def map_texts(schema: str, data: dict[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
    """A copy of canonical ``data`` with ``fn`` applied to every free-text field, in order.

    Labels are never touched.  ``fn`` is called in reading order (prompt before answer,
    first turn before later turns), so stateful callers such as consistent PII pseudonyms
    number entities in the order a reader meets them.
    """
    out = dict(data)
    if schema == "classification":
        out["text"] = fn(data["text"])
    elif schema == "chat":
        out["messages"] = _map_messages(data["messages"], fn)
    elif schema == "prompt_completion":
        out["prompt"], out["completion"] = fn(data["prompt"]), fn(data["completion"])
    elif schema == "instruction":
        out["instruction"] = fn(data["instruction"])
        out["input"] = fn(data["input"]) if data["input"] else data["input"]
        out["output"] = fn(data["output"])
    elif schema == "preference":
        for k in ("prompt", "chosen", "rejected"):
            out[k] = _map_messages(data[k], fn)
    elif schema == "text":
        out["text"] = fn(data["text"])
    else:
        raise ValueError(f"unknown schema {schema!r}")
    return out


def texts(schema: str, data: dict[str, Any]) -> list[str]:
    """Every free-text field of a canonical row, in reading order."""
    seen: list[str] = []
    map_texts(schema, data, lambda t: seen.append(t) or t)
    return seen


def joined_text(schema: str, data: dict[str, Any]) -> str:
    """One string for length statistics, hashing and near-duplicate detection."""
    return "\n".join(texts(schema, data))


def rarest_label(labels: list[str], counts: dict[str, int]) -> str:
    """The label of a multi-label row that stands for it in stratification and balancing: its rarest (``counts``:
    every label's count in the data), ties by name; by its first label a rare second label's rows were never
    spread over the splits or copied by oversampling."""
    return min(labels, key=lambda lab: (counts[lab], lab))


def labels_of(data: dict[str, Any]) -> list[str]:
    """The label(s) of a classification row as a list (empty for other schemas)."""
    label = data.get("label")
    if label is None:
        return []
    return list(label) if isinstance(label, list) else [label]
