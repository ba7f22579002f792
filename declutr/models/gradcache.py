"""The cached contrastive step (GradCache; Gao et al. 2021, "Scaling Deep Contrastive Learning
Batch Size under Memory Limited Setup"): a contrastive loss over more texts than fit through the
encoder with autograd at once, with the gradient of the whole batch.

A contrastive loss couples every embedding of the step, but the encoder's activations are only
needed to turn the gradient with respect to an embedding into parameter gradients. So
``GradCache.step`` runs three passes over the chunks (``ContrastiveModel.chunks``: sub-batches of
at most ``contrastive_chunk_size`` texts) of every text group:

1. ``_encode_without_grad``: every chunk through the encoder without autograd, keeping only the
   embeddings, the chunk's part of the masked-LM term (its masked tokens' losses times their
   weights, ``TextGroup.token_weights``) and the RNG state the chunk started from; then
   autocast's cached casts of the weights are dropped (``forget_autocast_casts``);
2. ``_cache_gradients``: ``ContrastiveModel.losses_from_embeddings`` with autograd, on the
   embeddings taken as (float32) leaves and the masked-LM sum taken as a leaf; the gradient of
   the loss with respect to each is kept, and the losses' own parameters (a learned
   temperature) get theirs;
3. ``_replay_with_grad``: each chunk again with autograd from its saved RNG state (the same
   dropout masks, on CPU and CUDA), back-propagating ``embedding . cached gradient`` plus the
   chunk's share of the masked-LM term (``d loss / d mlm * chunk's weighted sum``).

Every weighting of the terms is the model's own, so the gradient equals the plain step's on the
same chunks up to rounding. Memory holds one chunk's activations plus the embeddings; the price
is one more forward pass per chunk. The collectives of the losses (the gather of embeddings,
``mlm_mean_groups``' masked-token counts) run once per step, as in the plain step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from declutr.losses.base import at_least_float32
from declutr.models.groups import Chunk, ChunkOutput, TextGroup
from declutr.modules.batching import SubBatches

RngState = tuple[torch.Tensor, torch.Tensor | None]


def rng_state(device: torch.device) -> RngState:
    """The CPU generator's state and, on CUDA, the device's: what a chunk's dropout draws from."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


@contextlib.contextmanager
def replayed(state: RngState, device: torch.device):
    """Run the block from ``state``; the generators are as before the block afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], device)
        yield


def forget_autocast_casts() -> None:
    """Drop autocast's cached low-precision copies of the weights. Copies cast without autograd
    carry no history: on torch without pytorch#165068 the next pass under the same autocast
    would reuse them, and every weight behind them (each Linear's) would silently get no gradient."""
    torch.clear_autocast_cache()


def outside_autocast(device: torch.device):
    """Backward passes run outside autocast (as the trainer's uncached backward does)."""
    return torch.autocast(device.type, enabled=False)


class CachedStepModel(Protocol):
    """What the cached step needs of a model (``ContrastiveModel`` has it)."""

    def text_groups(self, batch: dict) -> list[TextGroup]: ...

    def chunks(self, group: TextGroup) -> tuple[SubBatches, list[Chunk]]: ...

    def encode_chunk(self, chunk: Chunk, embed: bool = True, masked_lm: bool = True) -> ChunkOutput: ...

    def losses_from_embeddings(
        self, embeddings: list[torch.Tensor | None], mlm_loss: torch.Tensor | None, batch: dict
    ) -> dict[str, torch.Tensor]: ...

    def loss_parameters(self) -> list[torch.nn.Parameter]: ...


@dataclass
class _GroupPass:
    """One text group through the three passes."""

    group: TextGroup
    plan: SubBatches
    chunks: list[Chunk]
    #: the RNG state each chunk started from in pass 1
    states: list[RngState] = field(default_factory=list)
    #: pass 1's embeddings in the group's row order, a float32 leaf (``None``: not embedded)
    embeddings: torch.Tensor | None = None
    #: d loss / d ``embeddings`` (``None``: the loss does not depend on them)
    gradient: torch.Tensor | None = None


class GradCache:
    """The cached step with chunks of at most ``chunk_size`` texts (``ContrastiveModel`` holds one)."""

    def __init__(self, chunk_size: int):
        self.chunk_size = chunk_size

    def step(
        self, model: CachedStepModel, batch: dict, backward: Callable[[torch.Tensor], None]
    ) -> dict[str, torch.Tensor]:
        """The detached loss terms, with ``backward`` called once per chunk (parameter gradients
        accumulate as for one pass) and once for the losses' own parameters."""
        groups = [_GroupPass(group, *model.chunks(group)) for group in model.text_groups(batch)]
        device = groups[0].group.tensors["input_ids"].device
        mlm_leaf = self._encode_without_grad(model, groups, device)
        output, mlm_gradient = self._cache_gradients(model, groups, mlm_leaf, batch, backward, device)
        self._replay_with_grad(model, groups, mlm_gradient, backward, device)
        return {key: value.detach() for key, value in output.items()}

    @staticmethod
    def _encode_without_grad(
        model: CachedStepModel, groups: list[_GroupPass], device: torch.device
    ) -> torch.Tensor | None:
        """Pass 1: every group's embeddings as leaves; the masked-LM sum over all chunks, a leaf."""
        mlm_sum = None
        with torch.no_grad():
            for record in groups:
                pieces = []
                for chunk in record.chunks:
                    record.states.append(rng_state(device))
                    output = model.encode_chunk(chunk, embed=record.group.embed)
                    if output.embeddings is not None:
                        pieces.append(output.embeddings)
                    if output.mlm_sum is not None:
                        mlm_sum = output.mlm_sum if mlm_sum is None else mlm_sum + output.mlm_sum
                if pieces:
                    rows = record.plan.rows(pieces)
                    record.embeddings = at_least_float32(rows).requires_grad_()
        forget_autocast_casts()  # the passes with autograd cast the weights afresh, with history
        return None if mlm_sum is None else mlm_sum.requires_grad_()

    @staticmethod
    def _cache_gradients(
        model: CachedStepModel,
        groups: list[_GroupPass],
        mlm_leaf: torch.Tensor | None,
        batch: dict,
        backward: Callable[[torch.Tensor], None],
        device: torch.device,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Pass 2: the losses on the leaves; each group's embedding gradient is stored in its
        record, the losses' own parameters get theirs through ``backward``. Returns the loss
        terms and d loss / d masked-LM sum."""
        with torch.enable_grad():
            output = model.losses_from_embeddings([record.embeddings for record in groups], mlm_leaf, batch)
        embedded = [record for record in groups if record.embeddings is not None]
        leaves = [record.embeddings for record in embedded] + ([mlm_leaf] if mlm_leaf is not None else [])
        own = model.loss_parameters()
        with outside_autocast(device):
            gradients = torch.autograd.grad(output["loss"], [*leaves, *own], allow_unused=True)
        for record, gradient in zip(embedded, gradients):
            record.gradient = gradient
        mlm_gradient = gradients[len(embedded)] if mlm_leaf is not None else None
        own_terms = [
            (parameter * gradient).sum()
            for parameter, gradient in zip(own, gradients[len(leaves) :])
            if gradient is not None
        ]
        if own_terms:  # a surrogate whose gradient with respect to each parameter is the cached one
            with outside_autocast(device):
                backward(sum(own_terms))
        return output, mlm_gradient

    @staticmethod
    def _replay_with_grad(
        model: CachedStepModel,
        groups: list[_GroupPass],
        mlm_gradient: torch.Tensor | None,
        backward: Callable[[torch.Tensor], None],
        device: torch.device,
    ) -> None:
        """Pass 3: each chunk again with autograd and its pass-1 dropout masks; backward of
        ``embeddings . cached gradient`` plus the chunk's share of the masked-LM term."""
        for record in groups:
            replay_mlm = mlm_gradient is not None and record.group.mlm_labels is not None
            if record.gradient is None and not replay_mlm:
                continue
            for chunk, state in zip(record.chunks, record.states):
                with replayed(state, device):
                    output = model.encode_chunk(chunk, embed=record.gradient is not None, masked_lm=replay_mlm)
                    terms = []
                    if output.embeddings is not None:
                        rows = chunk.rows
                        gradient = record.gradient if rows is None else record.gradient.index_select(0, rows)
                        terms.append((output.embeddings.to(gradient.dtype) * gradient).sum())
                    if output.mlm_sum is not None:
                        terms.append(mlm_gradient * output.mlm_sum)
                with outside_autocast(device):
                    backward(sum(terms))
