"""[CLS]-pooler head vs mean-pooling head on BANKING77, in one plain loop (no hone training code).

    python bench/pooling.py mean|pooler|cls [--epochs 1] [--data ../shared/data/banking77]
        [--seed 0] [--dropout P] [--freeze N] [--hf-like clip,init,wd]

MiniLM-L6 (embedded), every weight trained, batch 64, AdamW (body lr 4e-4, head 8e-3, weight
decay 0.01), 6% linear warm-up, label smoothing 0.1, max_length 64, length-sorted batches within
random chunks, seed 0; test accuracy on the published test file.  ``pooler`` is
BertForSequenceClassification's path (tanh pooler on [CLS]), ``cls`` the raw [CLS] vector,
``mean`` the masked mean of the last hidden states (what ``model.pooling: mean`` trains).
The loop is deliberately separate from hone's, so the comparison isolates the head's input;
``--dropout``, ``--freeze`` and ``--hf-like`` switch on, one at a time, the settings in which
hone's run differs or that hone's recipe uses (bench/RESULTS.md, time to accuracy).
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77"


def main() -> None:
    from transformers import AutoTokenizer, BertModel, get_linear_schedule_with_warmup

    from hone.model.load import minilm_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["mean", "pooler", "cls"])
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dropout", type=float, default=None, help="encoder dropout (default: the checkpoint's 0.1)")
    ap.add_argument("--freeze", type=int, default=0, help="freeze the embeddings and this many lower layers")
    ap.add_argument("--hf-like", default="", help="comma list of the HF Trainer / hone habits to adopt: "
                    "clip (clip the head's gradient too), init (head weights ~ N(0, 0.02), zero bias), "
                    "wd (no weight decay on biases and LayerNorm)")
    a = ap.parse_args()
    hf = set(filter(None, a.hf_like.split(",")))
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    torch.set_num_threads(a.threads)

    def read(p):
        with open(p, encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        return [r["text"] for r in rows], [r["category"] for r in rows]

    tr_x, tr_y = read(a.data / "train.csv")
    te_x, te_y = read(a.data / "test.csv")
    l2i = {lab: i for i, lab in enumerate(sorted(set(tr_y)))}
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    tr, te = (tok(x, truncation=True, max_length=64)["input_ids"] for x in (tr_x, te_x))
    extra = {} if a.dropout is None else {"hidden_dropout_prob": a.dropout, "attention_probs_dropout_prob": a.dropout}
    body = BertModel.from_pretrained(str(minilm_dir()), attn_implementation="sdpa", **extra)
    if a.freeze:
        for mod in [body.embeddings, *body.encoder.layer[:a.freeze]]:
            mod.requires_grad_(False)
    head = nn.Linear(body.config.hidden_size, len(l2i))
    if "init" in hf:
        nn.init.normal_(head.weight, std=body.config.initializer_range)
        nn.init.zeros_(head.bias)

    def feats(ids, mask):
        h = body(input_ids=ids, attention_mask=mask).last_hidden_state
        if a.mode == "mean":
            m = mask.unsqueeze(-1).float()
            return (h * m).sum(1) / m.sum(1)
        return h[:, 0] if a.mode == "cls" else body.pooler(h)

    def batches(ids, bs, shuffle):
        idx = list(range(len(ids)))
        if not shuffle:
            return [idx[i:i + bs] for i in range(0, len(idx), bs)]
        random.shuffle(idx)
        chunks = [sorted(idx[i:i + bs * 50], key=lambda j: len(ids[j])) for i in range(0, len(idx), bs * 50)]
        out = [c[i:i + bs] for c in chunks for i in range(0, len(c), bs)]
        random.shuffle(out)
        return out

    def pad(rows):
        ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
        return ids, (ids != 0).long()

    bs = 64
    steps = math.ceil(a.epochs * math.ceil(len(tr) / bs))
    body_params = [p for n, p in body.named_parameters() if not n.startswith("pooler") and p.requires_grad]
    if "wd" in hf:
        nd = [p for n, p in body.named_parameters() if p in set(body_params) and (p.ndim < 2 or "LayerNorm" in n)]
        groups = [{"params": [p for p in body_params if all(p is not q for q in nd)], "lr": 4e-4},
                  {"params": nd, "lr": 4e-4, "weight_decay": 0.0},
                  {"params": [head.weight, body.pooler.dense.weight], "lr": 8e-3},
                  {"params": [head.bias, body.pooler.dense.bias], "lr": 8e-3, "weight_decay": 0.0}]
    else:
        groups = [{"params": body_params, "lr": 4e-4},
                  {"params": [*head.parameters(), *body.pooler.parameters()], "lr": 8e-3}]
    opt = torch.optim.AdamW(groups, weight_decay=0.01, fused=True)
    sch = get_linear_schedule_with_warmup(opt, int(0.06 * steps), steps)
    y = torch.tensor([l2i[lab] for lab in tr_y])
    t0, step = time.perf_counter(), 0
    body.train()
    while step < steps:
        for b in batches(tr, bs, True):
            ids, m = pad([tr[i] for i in b])
            loss = F.cross_entropy(head(F.dropout(feats(ids, m), 0.1 if a.dropout is None else a.dropout, True)), y[b], label_smoothing=0.1)
            loss.backward()
            nn.utils.clip_grad_norm_([*body.parameters(), *head.parameters()] if "clip" in hf else body.parameters(), 1.0)
            opt.step()
            sch.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if step >= steps:
                break
    train_s = time.perf_counter() - t0
    body.eval()
    correct = 0
    with torch.no_grad():
        for b in batches(te, 128, False):
            ids, m = pad([te[i] for i in b])
            correct += (head(feats(ids, m)).argmax(-1) == torch.tensor([l2i[te_y[i]] for i in b])).sum().item()
    print(f"{a.mode} epochs {a.epochs} seed {a.seed} dropout {a.dropout} freeze {a.freeze} hf-like {a.hf_like or '-'}: training {train_s:.1f} s, test accuracy {correct / len(te):.4f} "
          f"({len(te)} texts)")


if __name__ == "__main__":
    main()
