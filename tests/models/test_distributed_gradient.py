"""Gradient through the cross-device gather in a real 2-process gloo run on CPU.

With ``scale_fix`` the DDP-averaged gradient of the contrastive term equals the single-process
gradient on the concatenated batch; without it, it is ``1 / world_size`` of it.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.fixtures.declutr_process import free_port
from tests.models.modelhelpers import make_batch

WORLD_SIZE = 2
ANCHORS = [
    "the captain came back to the village",
    "a letter from her mother was on the table",
    "they had not seen the mountain since the summer",
    "the doctor went to the church on the island",
]
POSITIVES = [
    ["the village", "the captain came"],
    ["her mother", "a letter from"],
    ["the mountain since", "they had not seen"],
    ["the church on the island", "the doctor"],
]


def build_model(path: str, scale_fix: bool):
    from transformers import AutoTokenizer

    from declutr.models import DeclutrModel
    from declutr.modules import TransformerEncoder

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(path)
    # one padded batch per group: the per-rank and whole-batch passes then see the same shapes, so the
    # comparison is about the gather alone (sub-batching has its own equality tests)
    model = DeclutrModel(
        encoder=TransformerEncoder(path),
        mlm_weight=0,
        scale_fix=scale_fix,
        tokenizer=tokenizer,
        max_padding_fraction=None,
    )
    return model.eval(), tokenizer  # eval: no dropout, so every process computes the same function


def local_batch(tokenizer, rank: int, world_size: int) -> dict:
    share = len(ANCHORS) // world_size
    part = slice(rank * share, (rank + 1) * share)
    return make_batch(tokenizer, ANCHORS[part], POSITIVES[part], masked=False)


def worker(rank: int, port: int, path: str, output: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        results = {}
        for scale_fix in (True, False):
            model, tokenizer = build_model(path, scale_fix)
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            output_dict = ddp(local_batch(tokenizer, rank, WORLD_SIZE))
            output_dict["loss"].backward()
            results[scale_fix] = {
                "loss": output_dict["contrastive_loss"],
                "grads": {name: p.grad.clone() for name, p in model.named_parameters()},
            }
        torch.save(results, os.path.join(output, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_gather_gradient_with_and_without_scale_fix(tiny_roberta, tmp_path):
    mp.spawn(worker, args=(free_port(), str(tiny_roberta), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]

    model, tokenizer = build_model(str(tiny_roberta), scale_fix=False)
    output = model(make_batch(tokenizer, ANCHORS, POSITIVES, masked=False))  # the concatenated batch, one process
    output["loss"].backward()
    single = {name: p.grad for name, p in model.named_parameters()}

    for rank in ranks:
        # every process sees the global batch, so the loss is the single-process loss
        torch.testing.assert_close(rank[True]["loss"], output["contrastive_loss"], atol=1e-5, rtol=0)
    # one tolerance for all parameters: some (attention key biases) have a gradient that is zero
    # up to rounding, where a per-tensor relative check would compare noise with noise
    scale = max(g.abs().max().item() for g in single.values())
    checked = 0
    for name, expected in single.items():
        for rank in ranks:  # DDP leaves the same averaged gradient on every rank
            torch.testing.assert_close(rank[True]["grads"][name], expected, atol=1e-6 * scale, rtol=1e-4)
            torch.testing.assert_close(rank[False]["grads"][name], expected / WORLD_SIZE, atol=1e-6 * scale, rtol=1e-4)
        checked += 1
    assert checked == len(single) > 10
