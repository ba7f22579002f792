"""The plugin example of README.md "Your own components (plugins)", with the test a plugin author
writes for it using ``declutr.testing``: keep the two in step."""

from __future__ import annotations

import torch

from declutr.core.construct import build
from declutr.modules.poolers import Pooler
from declutr.testing import make_tiny_model, tiny_declutr_config, train_tiny, write_documents


@Pooler.register("median", exist_ok=True)
class MedianPooler(Pooler):
    """Median over the non-pad tokens.

    # Parameters
    exclude_special: leave special tokens out.
    """

    def __init__(self, input_dim: int | None = None, exclude_special: bool = False):
        super().__init__(input_dim)
        self.exclude_special = exclude_special

    def forward(self, hidden_states, attention_mask, special_tokens_mask=None):
        keep = attention_mask.bool()
        if self.exclude_special and special_tokens_mask is not None:
            keep &= ~special_tokens_mask.bool()
        masked = hidden_states.masked_fill(~keep.unsqueeze(-1), float("nan"))
        return masked.nanmedian(dim=1).values


def test_the_median_pooler_ignores_padding():
    pooler = build(Pooler, {"type": "median"}, extras={"input_dim": 2})
    hidden = torch.tensor([[[1.0, 5.0], [3.0, 4.0], [2.0, 9.0], [100.0, 100.0]]])
    assert pooler(hidden, torch.tensor([[1, 1, 1, 0]])).tolist() == [[2.0, 5.0]]


def test_a_model_with_the_median_pooler_trains_and_exports(tmp_path):
    model = make_tiny_model(tmp_path / "model")
    config = tiny_declutr_config(model, write_documents(tmp_path / "documents.jsonl"), max_steps=2)
    config["model"]["pooler"] = {"type": "median"}
    records = train_tiny(config, tmp_path / "run")
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
