"""Tiny offline models for tests (plain module; fixtures live in the test files).

``build_tiny_llama(path)`` writes a randomly initialised 2-layer Llama (hidden 32) and a
word-level tokenizer trained on a few telecom sentences into ``path``, as a normal
transformers checkpoint (config.json + model.safetensors + tokenizer files), in well under a
second.  Its generations are garbage, but every code path (tokenizer, chat template, left
padding, ``generate``) is the real one.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "my phone bill is too high this month",
    "please cancel my contract today",
    "the internet is slow again and the router keeps restarting",
    "the new handset is broken and will not turn on",
    "roaming charges in spain were wrong on the invoice",
    "the signal is weak and calls drop all the time",
    "i want to upgrade my plan to unlimited data",
    "rewrite the message in different words keep the meaning keep it short",
    "system user assistant customer message rewrite",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def build_tokenizer(*, pad: bool = True, chat_template: bool = True):
    """A PreTrainedTokenizerFast (WordLevel) with <unk>, <s>, </s> and optionally <pad>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>"]
    tk = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tk.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=specials))
    kw = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}
    if pad:
        kw["pad_token"] = "<pad>"
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, **kw)
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def build_tiny_llama(path: str | Path, *, pad: bool = True, chat_template: bool = True, seed: int = 0) -> Path:
    """Save a tiny random Llama + tokenizer checkpoint into ``path`` and return it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tok = build_tokenizer(pad=pad, chat_template=chat_template)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id if pad else None, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def build_tiny_bert(path, *, seed: int = 0):
    """A 2-layer BERT (hidden 32) with the embedded MiniLM tokenizer, saved to ``path``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hone.model.load import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def build_tiny_t5(path, *, seed: int = 0):
    """A 2-layer random T5 (d_model 32) with the word-level test tokenizer, saved to ``path``."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tok = build_tokenizer(chat_template=False)
    cfg = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                   decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                   eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    T5ForConditionalGeneration(cfg).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return Path(path)
