"""A BERT sequence classifier whose head reads the mean of the last hidden states.

Sentence-transformers encoders such as all-MiniLM-L6-v2 (hone's embedded default) were trained
to represent a text by the mean of its token vectors; their [CLS] vector was never trained for
that.  ``BertForSequenceClassification`` classifies from the pooler's [CLS] output, so the head
first has to teach the encoder a new summary.  This class classifies from the masked mean
instead (``model.pooling: mean``).  Measured on BANKING77 after one epoch of the same plain loop
(``bench/pooling.py``): 92.95% test accuracy against 90.84% for the [CLS] pooler (bench/RESULTS.md).

The weights and their names are ``BertForSequenceClassification``'s (the pooler is kept and
unused) and ``config.classifier_pooling`` is ``"mean"`` (the key ModernBERT uses).  hone writes
this file into every artifact that uses it and registers it in ``config.json``'s ``auto_map``,
so plain transformers loads the right class with
``AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)``.

This file imports only torch and transformers: it is copied into artifacts as their modeling code.
"""

from __future__ import annotations

import torch
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from transformers import BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput


class BertMeanPoolingForSequenceClassification(BertForSequenceClassification):
    """``BertForSequenceClassification`` with masked mean pooling of the last hidden states."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, **kwargs):
        kwargs.pop("return_dict", None)  # peft passes it; the output is always a SequenceClassifierOutput
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
        hidden = outputs[0]
        if attention_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.config.problem_type is None:
                if self.num_labels == 1:
                    self.config.problem_type = "regression"
                elif labels.dtype in (torch.long, torch.int):
                    self.config.problem_type = "single_label_classification"
                else:
                    self.config.problem_type = "multi_label_classification"
            if self.config.problem_type == "regression":
                loss = MSELoss()(logits.squeeze(), labels.squeeze().to(logits.dtype))
            elif self.config.problem_type == "single_label_classification":
                loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
            else:
                loss = BCEWithLogitsLoss()(logits, labels.to(logits.dtype))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


BertMeanPoolingForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
