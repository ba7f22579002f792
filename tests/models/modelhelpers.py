"""Test helpers: batches in the format of docs/architecture.md, made from text with a tiny tokenizer."""

from __future__ import annotations

import torch

ANCHORS = [
    "The captain came back to the village in the winter and the river was still.",
    "A letter from her mother was on the table by the window.",
    "They had not seen the mountain since the summer.",
]
POSITIVES = [
    ["the village in the winter", "The captain came back"],
    ["her mother was on the table", "a letter"],
    ["the mountain since", "They had not seen the mountain since the summer."],
]


def tokenize(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    encoded = tokenizer(texts, padding=True, truncation=True, return_special_tokens_mask=True, return_tensors="pt")
    return {key: encoded[key] for key in ("input_ids", "attention_mask", "special_tokens_mask")}


def make_batch(tokenizer, anchors=ANCHORS, positives=POSITIVES, masked: bool = True, seed: int = 0) -> dict:
    """anchors (BERT-masked with labels when ``masked``), positives grouped by anchor, their owners."""
    batch = {"anchors": tokenize(tokenizer, anchors)}
    if masked:
        group = batch["anchors"]
        generator = torch.Generator().manual_seed(seed)
        candidates = (group["special_tokens_mask"] == 0) & (group["attention_mask"] == 1)
        chosen = candidates & (torch.rand(group["input_ids"].shape, generator=generator) < 0.3)
        chosen[:, 1] = candidates[:, 1]  # at least one masked position per anchor
        group["mlm_labels"] = torch.where(chosen, group["input_ids"], torch.full_like(group["input_ids"], -100))
        group["input_ids"] = torch.where(
            chosen, torch.full_like(group["input_ids"], tokenizer.mask_token_id), group["input_ids"]
        )
    if positives is not None:
        batch["positives"] = tokenize(tokenizer, [p for group in positives for p in group])
        batch["positive_anchor_index"] = torch.tensor([i for i, group in enumerate(positives) for _ in group])
    return batch
