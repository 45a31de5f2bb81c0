"""Chat templates, and turning canonical rows into token ids + trained-token masks.

One code path renders both training and inference text: :func:`render` with the tokenizer's
own template (or a named one from :data:`TEMPLATES` when the tokenizer has none), and
:func:`encode_messages` / :func:`encode_prompt` tokenize its output.

Prompt masking works on characters, not on template internals: for every assistant message
that trains, the text rendered up to it *with* the generation prompt ends where its reply
starts, and the text rendered up to and including it ends after its end-of-turn marker.  A
token trains when it starts inside such a span (fast tokenizers give character offsets).  So
the reply, its end-of-turn token and what the template puts right after it train; the
system / user turns and the assistant header do not — for any template that renders
conversations prefix-stably (every common one does; a template that does not is an error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hone.errors import DataError, ModelError

# Named templates for tokenizers without one.  Jinja, as transformers' apply_chat_template runs
# them (``bos_token`` / ``eos_token`` are in scope).  ``plain`` and ``zephyr`` need no new
# tokens: their end of turn is the tokenizer's EOS; ``chatml`` needs <|im_start|> / <|im_end|>.
TEMPLATES: dict[str, str] = {
    "plain": (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
        "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n"
        "{% else %}Assistant: {{ m['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}Assistant:{% endif %}"),
    "zephyr": (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"),
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
}
_TEMPLATE_TOKENS = {"chatml": ("<|im_start|>", "<|im_end|>")}
# End-of-turn markers used by common chat templates (besides the tokenizer's EOS).
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")
IGNORE = -100  # label of a position that does not train


@dataclass
class Example:
    """One tokenized example: ``labels[i]`` is ``input_ids[i]`` where position i trains, else -100."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False  # longer than max_length before truncation
    length: int = 0  # tokens before truncation

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def setup_tokenizer(tok, template: str | None, *, where: str = "model") -> list[str]:
    """Give ``tok`` a chat template and a pad token; returns notes on what was changed.

    ``template`` names one of :data:`TEMPLATES` (and overrides the tokenizer's own); None keeps
    the tokenizer's template and fails clearly when there is none.
    """
    notes = []
    if template is not None:
        if template not in TEMPLATES:
            raise ModelError(f"gen.template: unknown chat template {template!r}; choose one of {sorted(TEMPLATES)}")
        missing = [t for t in _TEMPLATE_TOKENS.get(template, ()) if t not in tok.get_vocab()]
        if missing:
            raise ModelError(f"gen.template={template}: the tokenizer of {where} has no {missing} tokens; "
                             "use gen.template=plain or zephyr, which end turns with the EOS token")
        tok.chat_template = TEMPLATES[template]
        notes.append(f"chat template: {template}")
    elif not getattr(tok, "chat_template", None):
        raise ModelError(f"the tokenizer of {where} has no chat template; set gen.template to one of "
                         f"{sorted(TEMPLATES)} (plain works with any tokenizer)")
    if tok.eos_token is None:
        raise ModelError(f"the tokenizer of {where} has no EOS token; generation could never stop")
    if tok.pad_token is None:  # safe: padded positions are masked out of attention and loss
        tok.pad_token = tok.eos_token
        notes.append(f"pad token was missing; using the EOS token {tok.eos_token!r}")
    if not getattr(tok, "is_fast", False):
        raise ModelError(f"the tokenizer of {where} is not a fast tokenizer; hone needs character offsets "
                         "to mask prompts (install `tokenizers` and use a model with tokenizer.json)")
    return notes


def end_of_turn_ids(tok) -> list[int]:
    """Token ids that end an assistant turn: EOS plus known end-of-turn markers in the template."""
    ids = [tok.eos_token_id]
    template = getattr(tok, "chat_template", None) or ""
    vocab = tok.get_vocab()
    for t in END_OF_TURN:
        if t in vocab and (t in template or t == tok.eos_token) and vocab[t] not in ids:
            ids.append(vocab[t])
    return ids


def to_messages(row: dict[str, Any], schema: str) -> list[dict[str, Any]]:
    """The conversation of a canonical row (chat, prompt_completion or instruction)."""
    if schema == "chat":
        return row["messages"]
    if schema == "prompt_completion":  # an empty prompt is plain text to continue: no user turn
        user = [{"role": "user", "content": row["prompt"]}] if row["prompt"].strip() else []
        return [*user, {"role": "assistant", "content": row["completion"]}]
    if schema == "instruction":
        user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
    raise DataError(f"a {schema} row is not a conversation")


def render(tok, messages: list[dict[str, Any]], *, add_generation_prompt: bool) -> str:
    """The template's text for ``messages`` (only role and content reach the template)."""
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    return tok.apply_chat_template(clean, tokenize=False, add_generation_prompt=add_generation_prompt)


def _ids(tok, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character offsets; BOS is prepended once unless the text already starts with it."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offs = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    if getattr(tok, "add_bos_token", False) and tok.bos_token_id is not None and (not ids or ids[0] != tok.bos_token_id):
        ids, offs = [tok.bos_token_id, *ids], [(0, 0), *offs]
    return ids, offs


def assistant_spans(tok, messages: list[dict[str, Any]], *, train_on: str = "assistant") -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans that train."""
    text = render(tok, messages, add_generation_prompt=False)
    if train_on == "all":
        return text, [(0, len(text))]
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or m.get("weight", 1) == 0:
            continue
        head = render(tok, messages[:i], add_generation_prompt=True) if i else ""
        upto = render(tok, messages[:i + 1], add_generation_prompt=False)
        if not text.startswith(upto) or not upto.startswith(head):
            raise ModelError("the chat template does not render conversations prefix-stably, so prompt masking "
                             "cannot find the assistant turns; set gen.template or gen.train_on=all")
        spans.append((len(head), len(upto)))
    return text, spans


def encode_messages(tok, messages: list[dict[str, Any]], max_length: int, *, train_on: str = "assistant") -> Example:
    """Token ids and labels of one conversation, right-truncated to ``max_length``."""
    text, spans = assistant_spans(tok, messages, train_on=train_on)
    ids, offs = _ids(tok, text)
    labels = [t if any(a <= s < b for a, b in spans) and e > s else IGNORE for t, (s, e) in zip(ids, offs, strict=True)]
    n = len(ids)
    return Example(ids[:max_length], labels[:max_length], truncated=n > max_length, length=n)


def encode_prompt(tok, messages: list[dict[str, Any]]) -> list[int]:
    """Ids of the inference prompt: the conversation so far plus the assistant header."""
    return _ids(tok, render(tok, messages, add_generation_prompt=True))[0]


def encode_text(tok, text: str) -> list[int]:
    """Raw text for continued pre-training: BOS (if the tokenizer uses one) + text + EOS, all trained."""
    ids, _ = _ids(tok, text)
    return [*ids, tok.eos_token_id]


def visualise_mask(tok, ex: Example, *, trained: str = "[[", end: str = "]]") -> str:
    """The decoded example with trained stretches wrapped in ``[[ ]]`` (for the lint report)."""
    out, inside = [], False
    for t, lab in zip(ex.input_ids, ex.labels, strict=True):
        on = lab != IGNORE
        if on != inside:
            out.append(trained if on else end)
            inside = on
        out.append(tok.decode([t], skip_special_tokens=False))
    if inside:
        out.append(end)
    return "".join(out)
