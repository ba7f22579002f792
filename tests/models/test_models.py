"""The declutr, simcse and isbert models on tiny checkpoints: losses, switches, inference path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from declutr.core.construct import Lazy, build
from declutr.core.errors import ConfigurationError
from declutr.losses import InfoNCELoss, NTXentLoss
from declutr.models import DeclutrModel, ISBERTModel, Model, SimCSEModel
from declutr.models.model import mean_per_anchor
from declutr.modules import TextEncoder, TransformerEncoder
from declutr.modules.encoders import is_checkpointing
from tests.models.modelhelpers import ANCHORS, make_batch, tokenize


def declutr_model(path, tokenizer, **config) -> DeclutrModel:
    torch.manual_seed(0)
    return build(
        Model, {"type": "declutr", "encoder": {"model_name": str(path)}, **config}, extras={"tokenizer": tokenizer}
    )


def test_the_encoder_loads_the_masked_lm_variant_only_when_mlm_is_on(tiny_roberta, roberta_tokenizer):
    with_mlm = declutr_model(tiny_roberta, roberta_tokenizer)
    assert type(with_mlm.encoder.model).__name__ == "RobertaForMaskedLM"
    assert with_mlm.encoder.masked_language_modeling and with_mlm.encoder.hidden_size == 32
    without = declutr_model(tiny_roberta, roberta_tokenizer, mlm_weight=0)
    assert type(without.encoder.model).__name__ == "RobertaModel"
    assert without.encoder.model.config._attn_implementation == "sdpa"
    assert not without.encoder.trust_remote_code
    with pytest.raises(RuntimeError, match="without its masked-LM head"):
        without.encoder.forward_masked_lm(torch.tensor([[0, 5, 2]]), torch.ones(1, 3, dtype=torch.long))


def test_turning_off_both_losses_is_an_error(tiny_roberta, roberta_tokenizer):
    with pytest.raises(ConfigurationError, match="both losses are off"):
        declutr_model(tiny_roberta, roberta_tokenizer, mlm_weight=0, contrastive_weight=0.0)
    with pytest.raises(ValueError, match="turn on at least one"):
        DeclutrModel(encoder=Lazy(lambda **kw: None), mlm_weight=0, contrastive_weight=0)


def test_an_encoder_config_contradicting_the_mlm_weight_is_an_error(tiny_roberta, roberta_tokenizer):
    config = {
        "type": "declutr",
        "mlm_weight": 0,
        "encoder": {"model_name": str(tiny_roberta), "masked_language_modeling": True},
    }
    with pytest.raises(ConfigurationError, match="without its masked-LM head"):
        build(Model, config, extras={"tokenizer": roberta_tokenizer})


@pytest.mark.parametrize("checkpoint", ["tiny_roberta", "tiny_bert"])
def test_total_loss_is_the_weighted_sum_of_contrastive_and_mlm(checkpoint, request):
    from transformers import AutoTokenizer

    path = request.getfixturevalue(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = declutr_model(
        path, tokenizer, contrastive_weight=0.5, mlm_weight=2.0, loss={"type": "nt_xent", "temperature": 0.1}
    )
    model.eval()  # no dropout: the terms can be recomputed independently
    batch = make_batch(tokenizer)
    output = model(batch)
    assert set(output) == {"loss", "contrastive_loss", "mlm_loss"}
    torch.testing.assert_close(output["loss"], 0.5 * output["contrastive_loss"] + 2.0 * output["mlm_loss"])

    with torch.no_grad():
        anchors = model.embed_group(batch["anchors"])  # the masked anchors, through the inference path
        positives = model.embed_group(batch["positives"])
        mean_positives = torch.stack([positives[0:2].mean(0), positives[2:4].mean(0), positives[4:6].mean(0)])
        expected_contrastive = NTXentLoss(0.1)(anchors, mean_positives)
        group = batch["anchors"]
        logits = model.encoder.model(input_ids=group["input_ids"], attention_mask=group["attention_mask"]).logits
        expected_mlm = F.cross_entropy(logits.flatten(0, 1), group["mlm_labels"].flatten(), ignore_index=-100)
    torch.testing.assert_close(output["contrastive_loss"], expected_contrastive)
    torch.testing.assert_close(output["mlm_loss"], expected_mlm)


def test_both_terms_train_the_encoder_and_the_ablations_report_one_term(tiny_roberta, roberta_tokenizer):
    batch = make_batch(roberta_tokenizer)
    model = declutr_model(tiny_roberta, roberta_tokenizer)
    model(batch)["loss"].backward()
    embeddings = model.encoder.model.roberta.embeddings.word_embeddings.weight
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0

    contrastive_only = declutr_model(tiny_roberta, roberta_tokenizer, mlm_weight=0)
    unmasked = make_batch(roberta_tokenizer, masked=False)
    output = contrastive_only(unmasked)
    assert set(output) == {"loss", "contrastive_loss"}
    output["loss"].backward()
    assert all(p.grad is not None for p in contrastive_only.parameters())  # DDP needs no unused parameters

    mlm_only = declutr_model(tiny_roberta, roberta_tokenizer, contrastive_weight=0)
    output = mlm_only({"anchors": batch["anchors"]})  # no positives needed
    assert set(output) == {"loss", "mlm_loss"}
    torch.testing.assert_close(output["loss"], output["mlm_loss"])


def test_missing_inputs_are_clear_errors(tiny_roberta, roberta_tokenizer):
    model = declutr_model(tiny_roberta, roberta_tokenizer)
    with pytest.raises(ValueError, match="no mlm_labels"):
        model(make_batch(roberta_tokenizer, masked=False))
    contrastive_only = declutr_model(tiny_roberta, roberta_tokenizer, mlm_weight=0)
    with pytest.raises(ValueError, match='no "positives"'):
        contrastive_only(make_batch(roberta_tokenizer, positives=None, masked=False))


def test_mlm_pass_gives_the_same_anchor_vectors_as_the_inference_path(tiny_roberta, roberta_tokenizer):
    encoder = TransformerEncoder(str(tiny_roberta), masked_language_modeling=True).eval()
    group = tokenize(roberta_tokenizer, ANCHORS)
    hidden, logits = encoder.forward_masked_lm(group["input_ids"], group["attention_mask"])
    assert logits.shape[-1] == len(roberta_tokenizer)
    torch.testing.assert_close(hidden, encoder(group["input_ids"], group["attention_mask"]), rtol=0, atol=0)


def test_embeddings_do_not_depend_on_the_batch_they_are_padded_in(tiny_roberta, roberta_tokenizer):
    model = declutr_model(tiny_roberta, roberta_tokenizer, mlm_weight=0).eval()
    with torch.no_grad():
        together = model.embed_group(tokenize(roberta_tokenizer, ANCHORS))
        apart = torch.cat([model.embed_group(tokenize(roberta_tokenizer, [text])) for text in ANCHORS])
    torch.testing.assert_close(together, apart, atol=1e-5, rtol=0)


def test_positives_are_averaged_per_anchor():
    embeddings = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [0.0, 4.0]])
    owners = torch.tensor([0, 0, 1, 2])
    torch.testing.assert_close(
        mean_per_anchor(embeddings, owners, 3), torch.tensor([[2.0, 1.0], [5.0, 5.0], [0.0, 4.0]])
    )
    torch.testing.assert_close(mean_per_anchor(embeddings, None, 2), torch.tensor([[2.0, 1.0], [2.5, 4.5]]))


def test_gradient_checkpointing_and_a_projection_head(tiny_roberta, roberta_tokenizer):
    model = declutr_model(
        tiny_roberta,
        roberta_tokenizer,
        mlm_weight=0,
        feedforward={"hidden_dims": [16, 8]},
        encoder={"model_name": str(tiny_roberta), "gradient_checkpointing": True},
    )
    assert is_checkpointing(model.encoder.model)
    assert model.head.output_dim == 8 and model.embedding_dim == 32  # the loss sees the head; inference does not
    model(make_batch(roberta_tokenizer, masked=False))["loss"].backward()
    assert model.head.feedforward.layers[0].weight.grad is not None


def test_simcse_unsupervised_views_differ_by_dropout_only(tiny_bert, bert_tokenizer):
    torch.manual_seed(0)
    model = build(
        Model, {"type": "simcse", "encoder": {"model_name": str(tiny_bert)}}, extras={"tokenizer": bert_tokenizer}
    )
    assert type(model.head.pooler).__name__ == "ClsMlpPooler"
    batch = {"anchors": tokenize(bert_tokenizer, ANCHORS)}
    model.train()
    output = model(batch)
    assert set(output) == {"loss", "contrastive_loss"}
    output["loss"].backward()
    assert model.head.pooler.dense.weight.grad is not None
    model.eval()  # without dropout the two views coincide
    with torch.no_grad():
        embeddings = model.embed_group(batch["anchors"])
        torch.testing.assert_close(model(batch)["loss"], InfoNCELoss(0.05)(embeddings, embeddings))


def test_simcse_supervised_uses_positives_and_hard_negatives(tiny_bert, bert_tokenizer):
    torch.manual_seed(0)
    model = SimCSEModel(
        encoder=TransformerEncoder(str(tiny_bert)),
        tokenizer=bert_tokenizer,
        loss=InfoNCELoss(0.05, hard_negative_weight=1.0),
    ).eval()
    batch = {
        "anchors": tokenize(bert_tokenizer, ANCHORS),
        "positives": tokenize(bert_tokenizer, ["the captain", "a letter", "the mountain"]),
        "negatives": tokenize(bert_tokenizer, ["a horse", "the night", "my father"]),
    }
    with torch.no_grad():
        a, p, n = (model.embed_group(batch[key]) for key in ("anchors", "positives", "negatives"))
        torch.testing.assert_close(model(batch)["loss"], InfoNCELoss(0.05, 1.0)(a, p, n))


def test_isbert_trains_its_cnn_and_embeds_with_the_mean_of_local_features(tiny_bert, bert_tokenizer):
    torch.manual_seed(0)
    config = {"type": "isbert", "encoder": {"model_name": str(tiny_bert)}, "pooler": {"type": "cnn", "out_channels": 4}}
    model = build(Model, config, extras={"tokenizer": bert_tokenizer})
    assert isinstance(model, ISBERTModel) and model.embedding_dim == 12
    batch = {"anchors": tokenize(bert_tokenizer, ANCHORS)}
    output = model(batch)
    assert set(output) == {"loss", "infomax_loss"}
    output["loss"].backward()
    assert model.head.pooler.convolutions[2].weight.grad.abs().sum() > 0
    assert model.encoder.model.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigurationError, match="not a CnnPooler"):
        build(Model, {**config, "pooler": {"type": "mean"}}, extras={"tokenizer": bert_tokenizer})


def test_registered_names():
    assert {"declutr", "simcse", "isbert"} <= set(Model.list_available())
    assert TextEncoder.kind_name == "encoder" and TextEncoder.list_available()[0] == "transformer"
