"""Length-sorted sub-batches: the plan, putting results back in order, and equal losses and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from declutr.core.construct import build
from declutr.models import Model
from declutr.modules import encoders
from declutr.modules.batching import SubBatches, extents, in_sub_batches, plan_sub_batches
from tests.models.modelhelpers import make_batch

# Lengths from 3 to 40 tokens, so sub-batching actually splits and trims.
ANCHORS = [
    "The captain came back.",
    (
        "A letter from her mother was on the table by the window, and the garden was white with the first snow of "
        "the winter, and the river was still under the ice of the long night."
    ),
    "They had not seen the mountain since the summer.",
    "The doctor went to the church on the island in the morning before the ship came back to the village.",
]
POSITIVES = [
    ["the captain", "came back"],
    ["her mother was on the table by the window", "the river was still under the ice of the long night"],
    ["the mountain", "They had not seen the mountain since the summer."],
    ["the church on the island in the morning", "the ship"],
]


def padding_fraction(lengths: list[int], rows: list[int]) -> float:
    width = max(lengths[row] for row in rows)
    return 1 - sum(lengths[row] for row in rows) / (len(rows) * width)


@pytest.mark.parametrize("bound", [0.0, 0.1, 0.3, 1.0])
def test_the_plan_covers_every_row_once_longest_first_within_the_padding_bound(bound):
    lengths = [int(x) for x in torch.randint(1, 60, (37,), generator=torch.Generator().manual_seed(3))]
    plan = plan_sub_batches(lengths, bound)
    assert sorted(row for rows in plan for row in rows) == list(range(len(lengths)))
    flat = [lengths[row] for rows in plan for row in rows]
    assert flat == sorted(flat, reverse=True)
    assert all(padding_fraction(lengths, rows) <= bound + 1e-9 for rows in plan)
    if bound == 0.0:
        assert len(plan) == len(set(lengths))
    if bound == 1.0:
        assert len(plan) == 1
    with pytest.raises(ValueError, match="between 0 and 1"):
        plan_sub_batches(lengths, 1.5)


def test_split_and_reassembly_restore_the_original_order_and_padding():
    mask = torch.zeros(5, 9, dtype=torch.long)
    for row, length in enumerate([3, 9, 1, 6, 3]):
        mask[row, :length] = 1
    assert extents(mask) == [3, 9, 1, 6, 3]
    values = torch.randn(5, 9, 4) * mask.unsqueeze(-1)
    plan = SubBatches(mask, 0.0)
    assert len(plan) == 4 and plan.padded_tokens(5) == 9 + 6 + 2 * 3 + 1
    pieces = plan.split(values)
    assert [piece.shape[1] for piece in pieces] == [9, 6, 3, 1]
    torch.testing.assert_close(plan.padded(pieces), values, rtol=0, atol=0)
    torch.testing.assert_close(plan.rows([piece.sum(1) for piece in pieces]), values.sum(1), rtol=0, atol=0)
    assert plan.split(None) == [None] * 4
    unsplit = SubBatches(mask, None)
    assert len(unsplit) == 1 and unsplit.split(values)[0] is values
    assert in_sub_batches(lambda v: v.sum(1), mask, 0.5, values).shape == (5, 4)


def test_left_padding_is_trimmed_by_extent_not_by_count():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    plan = SubBatches(mask, 0.0)
    assert extents(mask) == [4, 2, 1]
    torch.testing.assert_close(plan.padded(plan.split(mask)), mask, rtol=0, atol=0)


def build_model(path, tokenizer, **config) -> Model:
    torch.manual_seed(0)
    model = build(Model, {"encoder": {"model_name": str(path)}, **config}, extras={"tokenizer": tokenizer})
    return model.eval()  # no dropout: the padded and the sub-batched run compute the same function


def loss_and_gradients(model: Model, batch: dict, max_padding_fraction: float | None) -> tuple[dict, dict]:
    model.max_padding_fraction = max_padding_fraction
    model.zero_grad(set_to_none=True)
    output = model(batch)
    output["loss"].backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return {key: value.detach() for key, value in output.items()}, gradients


def assert_same_training_step(model: Model, batch: dict, fractions=(0.0, 0.25)) -> None:
    """Loss terms and every gradient of the sub-batched runs equal the padded run's.

    In float64 the comparison is tight: what is left is rounding, and a misplaced row or token
    would show at full size. (A tiny random model has tiny, cancelling gradients, which float32
    rounding would swamp; ``test_declutr_...`` checks float32 too.)
    """
    exact = next(model.parameters()).dtype == torch.float64
    rtol, atol = (1e-9, 1e-12) if exact else (1e-4, 1e-5)
    expected_output, expected_gradients = loss_and_gradients(model, batch, None)
    scale = max(g.abs().max().item() for g in expected_gradients.values())
    for fraction in fractions:
        output, gradients = loss_and_gradients(model, batch, fraction)
        assert output.keys() == expected_output.keys()
        for key in output:
            torch.testing.assert_close(output[key], expected_output[key], rtol=rtol, atol=atol)
        assert gradients.keys() == expected_gradients.keys()
        for name, gradient in gradients.items():
            torch.testing.assert_close(gradient, expected_gradients[name], rtol=rtol, atol=atol * scale, msg=name)


@pytest.mark.parametrize("checkpoint", ["tiny_roberta", "tiny_bert"])
def test_declutr_loss_and_gradients_equal_the_padded_batch(checkpoint, request):
    from transformers import AutoTokenizer

    path = request.getfixturevalue(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = build_model(path, tokenizer, type="declutr")
    batch = make_batch(tokenizer, ANCHORS, POSITIVES, masked=True)
    assert len(model.sub_batches(batch["anchors"])) > 1
    assert_same_training_step(model, batch)
    assert_same_training_step(model.double(), batch)


def test_the_mlm_loss_is_the_mean_over_all_masked_tokens_not_a_mean_of_sub_batch_means(tiny_roberta, roberta_tokenizer):
    model = build_model(tiny_roberta, roberta_tokenizer, type="declutr", contrastive_weight=0, max_padding_fraction=0.0)
    group = make_batch(roberta_tokenizer, ANCHORS, None, masked=True)["anchors"]
    with torch.no_grad():
        output = model({"anchors": group})
        logits = model.encoder.model(input_ids=group["input_ids"], attention_mask=group["attention_mask"]).logits
        per_token = F.cross_entropy(logits.flatten(0, 1), group["mlm_labels"].flatten(), reduction="none")
        selected = group["mlm_labels"].flatten() != -100
    torch.testing.assert_close(output["mlm_loss"], per_token[selected].mean())
    per_row = [
        per_token.view_as(group["mlm_labels"])[row][group["mlm_labels"][row] != -100].mean()
        for row in range(len(ANCHORS))
    ]
    assert abs(float(torch.stack(per_row).mean() - output["mlm_loss"])) > 1e-4  # the two readings differ here


@pytest.mark.parametrize("known_head", [True, False])
def test_masked_lm_logits_at_the_masked_positions_equal_the_full_logits(
    known_head, tiny_roberta, roberta_tokenizer, monkeypatch
):
    if not known_head:  # an unknown architecture: the whole model runs and the logits are picked
        monkeypatch.setattr(encoders, "MASKED_LM_HEADS", {})
    model = build_model(tiny_roberta, roberta_tokenizer, type="declutr")
    group = make_batch(roberta_tokenizer, ANCHORS, None, masked=True)["anchors"]
    selected = group["mlm_labels"] != -100
    with torch.no_grad():
        hidden, logits = model.encoder.forward_masked_lm(group["input_ids"], group["attention_mask"], selected)
        full = model.encoder.model(input_ids=group["input_ids"], attention_mask=group["attention_mask"]).logits
    assert logits.shape == (int(selected.sum()), full.size(-1))
    torch.testing.assert_close(logits, full[selected], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hidden, model.encoder(group["input_ids"], group["attention_mask"]))


def test_without_masked_positions_the_mlm_loss_is_zero_and_still_reaches_the_head(tiny_roberta, roberta_tokenizer):
    model = build_model(tiny_roberta, roberta_tokenizer, type="declutr")
    batch = make_batch(roberta_tokenizer, ANCHORS, POSITIVES, masked=True)
    batch["anchors"]["mlm_labels"].fill_(-100)
    output = model(batch)
    output["loss"].backward()
    assert float(output["mlm_loss"]) == 0.0
    assert model.encoder.model.lm_head.dense.weight.grad is not None


def test_simcse_supervised_and_isbert_equal_the_padded_batch(tiny_roberta, roberta_tokenizer):
    batch = make_batch(roberta_tokenizer, ANCHORS, [[group[1]] for group in POSITIVES], masked=False)
    batch["negatives"] = make_batch(roberta_tokenizer, [group[0] for group in POSITIVES], None, masked=False)["anchors"]
    assert_same_training_step(build_model(tiny_roberta, roberta_tokenizer, type="simcse").double(), batch)
    sentences = make_batch(roberta_tokenizer, ANCHORS, None, masked=False)
    isbert = build_model(tiny_roberta, roberta_tokenizer, type="isbert", pooler={"type": "cnn", "out_channels": 8})
    assert_same_training_step(isbert.double(), sentences)


def test_max_padding_fraction_is_a_config_key_and_is_checked(tiny_roberta, roberta_tokenizer):
    from declutr.core.errors import ConfigurationError

    assert (
        build_model(tiny_roberta, roberta_tokenizer, type="simcse", max_padding_fraction=None).max_padding_fraction
        is None
    )
    with pytest.raises(ConfigurationError, match="max_padding_fraction"):
        build_model(tiny_roberta, roberta_tokenizer, type="declutr", max_padding_fraction=2)
