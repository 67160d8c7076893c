"""`TransformerClassifier`: a pretrained encoder, masked mean pooling and a new linear head, run in stages.

The model is a list of *stages* — the embeddings, each transformer layer, the (parameter-free) pooling
and the head — and ``forward`` runs them in turn. Stages are what make frozen-body caching possible
(`learnkit.text.cache`): while the first stages are frozen, their output for a review never changes,
so it is computed once and later batches start from it. A stage's input and output is a *state* dict:
``{"ids"}`` at the start, then ``{"hidden": [B, L, D], "mask": [B, L]}``, then ``{"hidden": [B, D]}``
after pooling and ``{"hidden": logits}`` at the end. ``forward`` also accepts such a dict with a
``"stage"`` key saying where to start.

Mean pooling (not the ``[CLS]`` vector) is what all-MiniLM-L6-v2 was trained with.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.registry import register_model
from .models import masked_mean
from ..core.validation import check_int, check_number

__all__ = ["TransformerClassifier", "transformer_classifier", "staged_splitter"]


class TransformerClassifier(nn.Module):
    """``encoder`` (a Hugging Face BERT-style model) → mean over real tokens → dropout → linear.

    BERT-style encoders (with ``.embeddings`` and ``.encoder.layer``) are split into one stage per layer;
    any other encoder is a single stage called as ``encoder(input_ids=, attention_mask=)``.

    >>> import transformers
    >>> config = transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
    ...                                  intermediate_size=16)
    >>> model = TransformerClassifier(transformers.BertModel(config, add_pooling_layer=False), n_out=3).eval()
    >>> model.n_stages, model(torch.tensor([[2, 7, 9, 3], [2, 5, 3, 0]])).shape  # embeddings, 2 layers, pooling, head
    (5, torch.Size([2, 3]))
    """

    def __init__(self, encoder: nn.Module, n_out: int, pad_id: int = 0, head_dropout: float = 0.1):
        super().__init__()
        check_int("n_out", n_out)
        self.encoder, self.pad_id = encoder, pad_id
        dim = encoder.config.hidden_size
        self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(dim, n_out))
        inner = getattr(encoder, "encoder", None)
        self._staged = hasattr(encoder, "embeddings") and hasattr(inner, "layer")
        self._n_body = 1 + len(inner.layer) if self._staged else 1

    # --- stages --------------------------------------------------------------------------------------
    @property
    def n_stages(self) -> int:
        return self._n_body + 2  # body stages, pooling, head

    def stage_modules(self) -> list[nn.Module | None]:
        """The module of each stage (``None`` for the parameter-free pooling)."""
        body = [self.encoder.embeddings, *self.encoder.encoder.layer] if self._staged else [self.encoder]
        return [*body, None, self.head]

    def _attn_mask(self, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The attention mask in the layer's format, always built (never ``None`` for an all-true mask): asking
        whether it is all true would wait for the device in every layer and break ``torch.compile`` graphs."""
        if getattr(self.encoder.config, "_attn_implementation", "sdpa") == "sdpa":
            return mask[:, None, None, :]
        return (~mask[:, None, None, :]).to(dtype) * torch.finfo(dtype).min

    def _stage(self, i: int, state: dict) -> dict:
        if i < self._n_body:
            if i == 0:
                ids = state["ids"]
                mask = ids != self.pad_id
                if not self._staged:
                    return {"hidden": self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state,
                            "mask": mask}
                return {"hidden": self.encoder.embeddings(input_ids=ids), "mask": mask}
            hidden, mask = state["hidden"], state["mask"]
            out = self.encoder.encoder.layer[i - 1](hidden, self._attn_mask(mask, hidden.dtype))
            return {"hidden": out[0] if isinstance(out, tuple) else out, "mask": mask}
        if i == self._n_body:
            return {"hidden": masked_mean(state["hidden"], state["mask"])}
        return {"hidden": self.head(state["hidden"])}

    def run_stages(self, state: dict, start: int, stop: int) -> dict:
        """Run stages ``start`` to ``stop - 1`` on ``state``."""
        for i in range(start, stop):
            state = self._stage(i, state)
        return state

    def forward(self, x: torch.Tensor | dict) -> torch.Tensor:
        if isinstance(x, dict):
            return self.run_stages(x, int(x["stage"]), self.n_stages)["hidden"]
        return self.run_stages({"ids": x}, 0, self.n_stages)["hidden"]


def staged_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """One parameter group per stage that has parameters (embeddings, each layer, head): body first.

    >>> import transformers
    >>> config = transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
    ...                                  intermediate_size=16)
    >>> model = TransformerClassifier(transformers.BertModel(config, add_pooling_layer=False), n_out=2)
    >>> [len(group) for group in staged_splitter(model)]   # embeddings, layer 1, layer 2, head
    [5, 16, 16, 2]
    """
    return [list(m.parameters()) for m in model.stage_modules() if m is not None and any(True for _ in m.parameters())]


@register_model("text.transformer")
def transformer_classifier(n_out: int, source: str = "minilm", pad_id: int = 0, head_dropout: float = 0.1,
                           pretrained: bool = False, attn_dropout: float | None = None) -> TransformerClassifier:
    """Registered builder: the encoder of ``source`` (`learnkit.text.pretrained`) and a new head.

    ``attn_dropout`` (default ``None``: the encoder's own, 0.1 for MiniLM) replaces the dropout on the attention
    probabilities while training. At 0, PyTorch's fused attention kernel runs instead of the explicit
    softmax, dropout mask and batched products: training the top layers of MiniLM on a CPU costs about a
    third less; whether accuracy holds is not settled (IMDB, one seed: 0.882 with bf16 and no attention
    dropout against 0.889 before, the two not separated; ``benchmarks/RESULTS.md``), so it is not the default.

    ``pretrained=False`` (what an export records) builds the architecture from ``config.json`` alone;
    the weights come from the export.

    >>> import tempfile, transformers
    >>> folder = tempfile.mkdtemp()                        # a local Hugging Face folder: here only its config.json
    >>> transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
    ...                         intermediate_size=16).save_pretrained(folder)
    >>> model = transformer_classifier(n_out=2, source=folder)
    >>> type(model.encoder).__name__, model.n_stages, model.head[-1]
    ('BertModel', 5, Linear(in_features=8, out_features=2, bias=True))
    >>> model.encoder.config.attention_probs_dropout_prob, model.encoder.config.hidden_dropout_prob
    (0.1, 0.1)
    >>> transformer_classifier(n_out=2, source=folder, attn_dropout=0.0).encoder.config.attention_probs_dropout_prob
    0.0
    """
    from .pretrained import load_encoder
    if attn_dropout is not None:
        check_number("attn_dropout", attn_dropout, low=0, high=1)
    return TransformerClassifier(load_encoder(source, pretrained=pretrained, attn_dropout=attn_dropout), n_out,
                                 pad_id=pad_id, head_dropout=head_dropout)
