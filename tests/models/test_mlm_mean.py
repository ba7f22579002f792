"""The masked-LM term's mean: each rank's own (the reference), one global mean
(``mlm_global_mean``) or the mean of group means (``mlm_mean_groups``), on one process and on
two gloo processes whose DDP-averaged gradient must be the single-process one."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from declutr.core.construct import build
from declutr.core.errors import ConfigurationError
from declutr.models import DeclutrModel, Model
from tests.fixtures.declutr_process import free_port
from tests.models.modelhelpers import make_batch

WORLD_SIZE = 2
ANCHORS = [  # different lengths, so the length-sorted sub-batches reorder the rows
    "the captain came back to the village in the winter and the river was still",
    "a letter",
    "they had not seen the mountain since the summer",
    "the doctor went to the church on the island with his father and mother",
]


def mlm_model(path: str, **config) -> DeclutrModel:
    from declutr.modules import TransformerEncoder

    torch.manual_seed(0)
    # max_padding_fraction 0: one sub-batch per length, so the targets come out of row order
    encoder = TransformerEncoder(path, masked_language_modeling=True)
    model = DeclutrModel(encoder=encoder, contrastive_weight=0, max_padding_fraction=0.0, **config)
    return model.eval()  # no dropout: every process computes the same function


def global_batch(path: str) -> dict:
    from transformers import AutoTokenizer

    return make_batch(AutoTokenizer.from_pretrained(path), ANCHORS, positives=None, seed=1)


def rows(batch: dict, part: slice) -> dict:
    return {"anchors": {key: value[part] for key, value in batch["anchors"].items()}}


def loss_and_grads(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    output = model(batch)
    output["loss"].backward()
    inner = getattr(model, "module", model)  # DDP's wrapped model
    grads = {name: p.grad.clone() for name, p in inner.named_parameters() if p.grad is not None}
    return output["mlm_loss"], grads


def test_group_means_on_one_process(tiny_roberta):
    batch = global_batch(str(tiny_roberta))
    plain = mlm_model(str(tiny_roberta))
    mean = plain(batch)["mlm_loss"]
    halves = [plain(rows(batch, slice(0, 2)))["mlm_loss"], plain(rows(batch, slice(2, 4)))["mlm_loss"]]
    singles = [plain(rows(batch, slice(i, i + 1)))["mlm_loss"] for i in range(4)]
    assert not torch.allclose(mean, torch.stack(halves).mean(), rtol=1e-4, atol=0)  # the three differ on this batch

    torch.testing.assert_close(mlm_model(str(tiny_roberta), mlm_global_mean=True)(batch)["mlm_loss"], mean)
    torch.testing.assert_close(mlm_model(str(tiny_roberta), mlm_mean_groups=1)(batch)["mlm_loss"], mean)
    torch.testing.assert_close(
        mlm_model(str(tiny_roberta), mlm_mean_groups=2)(batch)["mlm_loss"], torch.stack(halves).mean()
    )
    torch.testing.assert_close(
        mlm_model(str(tiny_roberta), mlm_mean_groups=4)(batch)["mlm_loss"], torch.stack(singles).mean()
    )


def test_groups_that_do_not_divide_the_step_and_both_switches_are_errors(tiny_roberta):
    with pytest.raises(ValueError, match="4 anchors per step .* cannot be cut into 3 equal groups"):
        mlm_model(str(tiny_roberta), mlm_mean_groups=3)(global_batch(str(tiny_roberta)))
    config = {
        "type": "declutr",
        "encoder": {"model_name": str(tiny_roberta)},
        "mlm_global_mean": True,
        "mlm_mean_groups": 2,
    }
    with pytest.raises(ConfigurationError, match="set mlm_global_mean or mlm_mean_groups, not both"):
        build(Model, config)


SETTINGS = {
    "per_rank": {},
    "global": {"mlm_global_mean": True},
    "groups1": {"mlm_mean_groups": 1},
    "groups4": {"mlm_mean_groups": 4},
}


def worker(rank: int, port: int, path: str, output: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        share = len(ANCHORS) // WORLD_SIZE
        local = rows(global_batch(path), slice(rank * share, (rank + 1) * share))
        results = {}
        for name, config in SETTINGS.items():
            model = mlm_model(path, **config)
            loss, grads = loss_and_grads(torch.nn.parallel.DistributedDataParallel(model), local)
            logged = loss.clone()
            dist.all_reduce(logged)  # the trainer logs the mean over ranks
            results[name] = {"loss": logged / WORLD_SIZE, "grads": grads}
        torch.save(results, os.path.join(output, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="gloo is not available")
def test_two_processes_give_the_single_process_term_and_gradient(tiny_roberta, tmp_path):
    mp.spawn(worker, args=(free_port(), str(tiny_roberta), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]
    batch = global_batch(str(tiny_roberta))
    # the one-process equivalents: each rank's own mean is 2 groups of the step; the global mean 1
    expected = {
        "per_rank": mlm_model(str(tiny_roberta), mlm_mean_groups=2),
        "global": mlm_model(str(tiny_roberta)),
        "groups1": mlm_model(str(tiny_roberta)),
        "groups4": mlm_model(str(tiny_roberta), mlm_mean_groups=4),
    }
    for name, model in expected.items():
        loss, grads = loss_and_grads(model, batch)
        scale = max(g.abs().max().item() for g in grads.values())
        for rank in ranks:
            torch.testing.assert_close(rank[name]["loss"], loss, atol=0, rtol=1e-5)
            assert rank[name]["grads"].keys() == grads.keys()
            for parameter, gradient in grads.items():
                torch.testing.assert_close(rank[name]["grads"][parameter], gradient, atol=1e-6 * scale, rtol=1e-4)
