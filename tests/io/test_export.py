"""Exports: declutr, transformers (AutoModel + pooling) and sentence-transformers give the same embeddings."""

from __future__ import annotations

import json

import pytest
import torch

from declutr.core.construct import build
from declutr.io.export import POOLING_CONFIG, POOLING_WEIGHTS, load_embedding_model
from declutr.models import Model
from declutr.models.model import mean_per_anchor
from tests.models.modelhelpers import ANCHORS, make_batch, tokenize

TEXTS = [*ANCHORS, "winter", "The doctor and the captain went to the church on the island before the night came."]


def trained(config: dict, tokenizer, batch: dict) -> Model:
    """A model built from ``config`` after one SGD step, so its weights differ from the checkpoint's."""
    torch.manual_seed(0)
    model = build(Model, config, extras={"tokenizer": tokenizer})
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(batch)["loss"].backward()
    optimizer.step()
    return model.eval()


def declutr_embeddings(model: Model, tokenizer, texts=TEXTS) -> torch.Tensor:
    """The in-memory model's embeddings at inference."""
    group = tokenize(tokenizer, texts)
    with torch.no_grad():
        return model.embed(group["input_ids"], group["attention_mask"], group["special_tokens_mask"])


def loaded_embeddings(path, texts=TEXTS) -> torch.Tensor:
    loaded = load_embedding_model(path)
    group = tokenize(loaded.tokenizer, texts)
    return loaded.embed(group["input_ids"], group["attention_mask"], group["special_tokens_mask"])


def sentence_transformers_embeddings(path, texts=TEXTS) -> torch.Tensor:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = sentence_transformers.SentenceTransformer(str(path), device="cpu")
    return torch.as_tensor(model.encode(texts, convert_to_numpy=True))


def test_declutr_export_matches_in_declutr_transformers_and_sentence_transformers(
    tiny_roberta, roberta_tokenizer, tmp_path
):
    from transformers import AutoModel, AutoModelForMaskedLM

    config = {"type": "declutr", "encoder": {"model_name": str(tiny_roberta)}}
    model = trained(config, roberta_tokenizer, make_batch(roberta_tokenizer))
    expected = declutr_embeddings(model, roberta_tokenizer)
    export = model.export(tmp_path / "model")
    names = {p.name for p in export.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling",
        POOLING_CONFIG,
    } <= names
    assert POOLING_WEIGHTS not in names  # mean pooling has no weights
    assert not any(name.endswith((".bin", ".pt")) for name in names)

    assert (loaded_embeddings(export) - expected).abs().max() <= 1e-5
    assert (sentence_transformers_embeddings(export) - expected).abs().max() <= 1e-5

    # transformers + the documented pooling: mean over all non-padding tokens
    bare = AutoModel.from_pretrained(str(export)).eval()
    group = tokenize(roberta_tokenizer, TEXTS)
    with torch.no_grad():
        hidden = bare(input_ids=group["input_ids"], attention_mask=group["attention_mask"]).last_hidden_state
    mask = group["attention_mask"].unsqueeze(-1).float()
    assert ((hidden * mask).sum(1) / mask.sum(1) - expected).abs().max() <= 1e-5

    # the masked-LM head is kept, trained weights and all, so training can continue from the export
    masked_lm = AutoModelForMaskedLM.from_pretrained(str(export))
    torch.testing.assert_close(masked_lm.lm_head.dense.weight, model.encoder.model.lm_head.dense.weight, rtol=0, atol=0)
    continued = build(
        Model, {"type": "declutr", "encoder": {"model_name": str(export)}}, extras={"tokenizer": roberta_tokenizer}
    )
    torch.testing.assert_close(continued.encoder.model.lm_head.dense.weight, model.encoder.model.lm_head.dense.weight)


def test_export_without_mlm_and_a_second_export_replaces_the_first(tiny_roberta, roberta_tokenizer, tmp_path):
    config = {"type": "declutr", "mlm_weight": 0, "pooler": "max", "encoder": {"model_name": str(tiny_roberta)}}
    batch = make_batch(roberta_tokenizer, masked=False)
    first = trained(config, roberta_tokenizer, batch)
    first.export(tmp_path / "model")
    second = trained({**config, "loss": {"type": "nt_xent", "temperature": 1.0}}, roberta_tokenizer, batch)
    export = second.export(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging folders left behind
    pooling = json.loads((export / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_max_tokens"] and not pooling["pooling_mode_mean_tokens"]
    expected = declutr_embeddings(second, roberta_tokenizer)
    assert (declutr_embeddings(first, roberta_tokenizer) - expected).abs().max() > 1e-4
    assert (loaded_embeddings(export) - expected).abs().max() <= 1e-5
    assert (sentence_transformers_embeddings(export) - expected).abs().max() <= 1e-5


def test_simcse_export_drops_the_training_mlp_at_inference(tiny_bert, bert_tokenizer, tmp_path):
    model = trained(
        {"type": "simcse", "encoder": {"model_name": str(tiny_bert)}},
        bert_tokenizer,
        {"anchors": tokenize(bert_tokenizer, ANCHORS)},
    )
    export = model.export(tmp_path / "model")
    description = json.loads((export / POOLING_CONFIG).read_text())
    assert description["pooler"] == {"type": "cls_mlp"} and description["sentence_transformers"]
    assert json.loads((export / "1_Pooling" / "config.json").read_text())["pooling_mode_cls_token"]
    assert (export / POOLING_WEIGHTS).is_file()  # the MLP is kept, unused at inference
    expected = declutr_embeddings(model, bert_tokenizer)
    with torch.no_grad():
        cls = model.encoder(**{k: v for k, v in tokenize(bert_tokenizer, TEXTS).items() if k != "special_tokens_mask"})[
            :, 0
        ]
    torch.testing.assert_close(expected, cls)
    assert (loaded_embeddings(export) - expected).abs().max() <= 1e-5
    assert (sentence_transformers_embeddings(export) - expected).abs().max() <= 1e-5


@pytest.mark.parametrize(
    "config",
    [
        {"type": "isbert", "pooler": {"type": "cnn", "out_channels": 4}},
        {
            "type": "declutr",
            "mlm_weight": 0,
            "feedforward": {"hidden_dims": [24, 16], "activations": ["gelu", "linear"], "at_inference": True},
        },
        {"type": "declutr", "mlm_weight": 0, "pooler": {"type": "mean", "exclude_special_tokens": True}},
    ],
    ids=["cnn", "projection_head_at_inference", "mean_without_special_tokens"],
)
def test_poolings_sentence_transformers_cannot_express_reload_in_declutr(config, tiny_bert, bert_tokenizer, tmp_path):
    config = {**config, "encoder": {"model_name": str(tiny_bert)}}
    batch = make_batch(bert_tokenizer, masked=False)
    model = trained(config, bert_tokenizer, batch if config["type"] == "declutr" else {"anchors": batch["anchors"]})
    export = model.export(tmp_path / "model")
    assert not (export / "modules.json").exists()
    description = json.loads((export / POOLING_CONFIG).read_text())
    assert description["sentence_transformers"] is False
    expected = declutr_embeddings(model, bert_tokenizer)
    assert (loaded_embeddings(export) - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("at_inference", [False, True])
def test_a_projection_head_feeds_the_loss_and_is_left_out_at_inference_unless_asked(
    at_inference, tiny_roberta, roberta_tokenizer, tmp_path
):
    """The reference's ``embeddings`` were the pooled vectors, its ``projections`` only fed the loss:
    declutr's default. ``at_inference: true`` keeps the head at inference. Model.embed, the export,
    the Encoder and sentence-transformers all agree."""
    from declutr.inference import Encoder

    head = {"hidden_dims": [24, 16], "activations": ["gelu", "linear"], "at_inference": at_inference}
    config = {"type": "declutr", "mlm_weight": 0, "feedforward": head, "encoder": {"model_name": str(tiny_roberta)}}
    batch = make_batch(roberta_tokenizer, masked=False)
    model = trained(config, roberta_tokenizer, batch)
    group = tokenize(roberta_tokenizer, TEXTS)
    with torch.no_grad():
        hidden = model.encoder(group["input_ids"], group["attention_mask"])
        mask = group["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        projected = model.head.feedforward(pooled)
        torch.testing.assert_close(model.embed_group(group), projected)  # what the losses see
        # the loss is the contrastive loss of the projections
        anchors, positives = model.embed_group(batch["anchors"]), model.embed_group(batch["positives"])
        expected_loss = model.loss(anchors, mean_per_anchor(positives, batch["positive_anchor_index"], 3))
        torch.testing.assert_close(model(batch)["loss"], expected_loss)
    expected = projected if at_inference else pooled
    assert model.embedding_dim == expected.shape[1] == (16 if at_inference else 32)
    torch.testing.assert_close(declutr_embeddings(model, roberta_tokenizer), expected)

    export = model.export(tmp_path / "model")
    description = json.loads((export / POOLING_CONFIG).read_text())
    assert (description["feedforward"] is not None) == at_inference
    assert (
        export / "modules.json"
    ).exists() != at_inference  # pre-projection mean pooling is plain sentence-transformers
    assert (loaded_embeddings(export) - expected).abs().max() <= 1e-5
    encoder = Encoder(str(export), device="cpu")
    assert encoder.dimension == expected.shape[1]
    assert (torch.as_tensor(encoder(TEXTS)) - expected).abs().max() <= 1e-5
    if not at_inference:
        assert (sentence_transformers_embeddings(export) - expected).abs().max() <= 1e-5


def test_loading_plain_and_sentence_transformers_checkpoints(tiny_roberta, roberta_tokenizer, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    # a plain masked-LM checkpoint (like the published DeCLUTR ones): mean pooling
    plain = declutr_embeddings(
        build(
            Model,
            {"type": "declutr", "mlm_weight": 0, "encoder": {"model_name": str(tiny_roberta)}},
            extras={"tokenizer": roberta_tokenizer},
        ).eval(),
        roberta_tokenizer,
    )
    assert (loaded_embeddings(tiny_roberta) - plain).abs().max() <= 1e-5
    # a folder saved by sentence-transformers itself, with cls pooling and normalisation
    modules = sentence_transformers.models
    transformer = modules.Transformer(str(tiny_roberta))
    folder = tmp_path / "st"
    sentence_transformers.SentenceTransformer(
        modules=[transformer, modules.Pooling(32, "cls"), modules.Normalize()], device="cpu"
    ).save(str(folder))
    loaded = loaded_embeddings(folder)
    torch.testing.assert_close(loaded.norm(dim=-1), torch.ones(len(TEXTS)))
    assert (loaded - sentence_transformers_embeddings(folder)).abs().max() <= 1e-5
