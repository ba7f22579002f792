"""The cached contrastive step (GradCache; Gao et al. 2021, "Scaling Deep Contrastive Learning
Batch Size under Memory Limited Setup"): a contrastive loss over more texts than fit through the
encoder with autograd at once, with the gradient of the whole batch.

A contrastive loss couples every embedding of the step, but the encoder's activations are only
needed to turn the gradient with respect to an embedding into parameter gradients. So:

1. pass 1 runs every chunk of every text group (``Model.text_groups``, chunks of at most
   ``contrastive_chunk_size`` texts) through the encoder without autograd, keeping only the
   embeddings (and the chunk's part of the masked-LM term: its masked tokens' losses times
   their weights, 1/all masked tokens of the group unless ``TextGroup.mlm_weights``), and the RNG state
   each chunk started from;
2. ``Model.contrastive_losses`` computes the loss terms, with autograd, from the embeddings taken
   as leaves (float32) and the masked-LM mean taken as a leaf: its gradient with respect to each
   is cached;
3. pass 2 re-runs each chunk with autograd from its saved RNG state (the same dropout masks, on
   CPU and CUDA) and back-propagates ``embedding . cached gradient`` plus the chunk's share of the
   masked-LM term (``d loss / d mlm * chunk's weighted sum``).

Every weighting of the terms is ``contrastive_losses``' own, so the gradient equals the uncached
step's on the same chunks up to rounding. Memory holds one chunk's activations plus the
embeddings; the price is one more forward pass per chunk. The collectives of the losses (the
gather of embeddings, ``mlm_mean_groups``' masked-token counts) run once per step, as uncached.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

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


def outside_autocast(device: torch.device):
    """Backward passes run outside autocast (as the trainer's uncached backward does)."""
    return torch.autocast(device.type, enabled=False)


def cached_step(model, batch: dict, backward: Callable[[torch.Tensor], None]) -> dict[str, torch.Tensor]:
    """``model.forward_backward`` with ``contrastive_chunk_size`` set: the detached loss terms,
    with ``backward`` called once per chunk (parameter gradients accumulate as for one pass)."""
    groups = model.text_groups(batch)
    device = groups[0].tensors["input_ids"].device
    plans = [model.sub_batches(group.tensors) for group in groups]
    token_weights = [
        None if group.mlm_labels is None else plan.split(_token_weights(group)) for group, plan in zip(groups, plans)
    ]

    # Pass 1: every chunk without autograd.
    states: list[list[RngState]] = []
    embeddings: list[torch.Tensor | None] = []
    mlm_sum = None
    with torch.no_grad():
        for group, plan, weights in zip(groups, plans, token_weights):
            group_states, pieces = [], []
            for number, chunk in enumerate(model.chunks(group, plan)):
                group_states.append(rng_state(device))
                chunk_embeddings, logits, targets = model.encode_chunk(*chunk, embed=group.embed)
                if chunk_embeddings is not None:
                    pieces.append(chunk_embeddings)
                if logits is not None:
                    chunk_sum = model.mlm_loss.summed(logits, targets, _selected(weights[number], chunk[3]))
                    mlm_sum = chunk_sum if mlm_sum is None else mlm_sum + chunk_sum
            states.append(group_states)
            if pieces:
                rows = plan.rows(pieces)
                embeddings.append(rows.to(torch.promote_types(rows.dtype, torch.float32)).requires_grad_())
            else:
                embeddings.append(None)
    mlm_leaf = None if mlm_sum is None else mlm_sum.requires_grad_()

    # The losses on the embeddings as leaves; their gradients are cached.
    with torch.enable_grad():
        output = model.contrastive_losses(embeddings, mlm_leaf, batch)
    leaves = [leaf for leaf in [*embeddings, mlm_leaf] if leaf is not None]
    parameters = [p for p in model.parameters() if p.requires_grad]  # the losses' own (a learned temperature)
    with outside_autocast(device):
        gradients = torch.autograd.grad(output["loss"], leaves + parameters, allow_unused=True)
    cached = dict(zip(map(id, leaves), gradients))
    own = [(p, g) for p, g in zip(parameters, gradients[len(leaves) :]) if g is not None]
    mlm_gradient = cached.get(id(mlm_leaf)) if mlm_leaf is not None else None
    if own:
        with outside_autocast(device):
            backward(sum((p * g).sum() for p, g in own))

    # Pass 2: each chunk again, with autograd and its pass-1 dropout masks.
    for group, plan, group_states, group_embeddings, weights in zip(groups, plans, states, embeddings, token_weights):
        gradient = cached.get(id(group_embeddings)) if group_embeddings is not None else None
        labels = group.mlm_labels if mlm_gradient is not None else None
        if gradient is None and labels is None:
            continue
        for number, (chunk, state) in enumerate(zip(model.chunks(group, plan), group_states)):
            input_ids, attention_mask, special_tokens_mask, chunk_labels = chunk
            with replayed(state, device):
                chunk_embeddings, logits, targets = model.encode_chunk(
                    input_ids,
                    attention_mask,
                    special_tokens_mask,
                    chunk_labels if labels is not None else None,
                    embed=gradient is not None,
                )
                terms = []
                if chunk_embeddings is not None:
                    rows = plan.row_index(number)
                    chunk_gradient = gradient if rows is None else gradient.index_select(0, rows)
                    terms.append((chunk_embeddings.to(chunk_gradient.dtype) * chunk_gradient).sum())
                if logits is not None:
                    terms.append(
                        mlm_gradient * model.mlm_loss.summed(logits, targets, _selected(weights[number], chunk_labels))
                    )
            with outside_autocast(device):
                backward(sum(terms))
    return {key: value.detach() for key, value in output.items()}


def _token_weights(group) -> torch.Tensor:
    """Each masked token's weight in the masked-LM term (``[N, L]``): ``group.mlm_weights``, or
    1 / the group's masked-token count (the plain mean over the group's masked tokens)."""
    if group.mlm_weights is not None:
        return group.mlm_weights
    masked = (group.mlm_labels != -100).to(torch.float64)
    return masked / masked.sum().clamp(min=1)


def _selected(weights: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A chunk's weights at its masked positions, in ``encode_chunk``'s order of the targets."""
    return weights[labels != -100]
