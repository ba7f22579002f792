#!/usr/bin/env python
"""Benchmark of masked-LM pretraining from scratch (not a test).

    python benchmarks/bench_pretrain.py [--data FILE] [--tokenizer DIR] [--steps 20] [--rounds 2]

Real (non-padding) tokens per second of one training step, in one process, on the same corpus:

- ``declutr``: ``training_config/pretrain_small.jsonnet`` as ``declutr train`` runs it (the
  windows reader's packed 128-token inputs, logits only at the masked positions, the trainer's
  AdamW, gradient clipping and logging), from its data loader;
- ``padded, full logits``: the same architecture as a plain ``BertForMaskedLM`` forward and
  backward with ``labels`` (logits for every position, the loss over the masked ones, torch's
  AdamW), on the same packed windows: only the head differs;
- ``padded sentences, full logits``: the same, fed as a line-by-line masked-LM script feeds it:
  each document cut into sentences (at . ! ?), batches of 32 padded to their longest (at most 128).

Each variant runs ``--steps`` steps after one warm-up step, ``--rounds`` times interleaved; the
best round counts (these machines are noisy). Prints one row per variant and the ratios.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def declutr_trainer(data: str, tokenizer: str, run_dir: Path):
    from declutr.training.experiment import Experiment

    experiment = Experiment.from_file(
        ROOT / "training_config" / "pretrain_small.jsonnet",
        {
            "train_data_path": data,
            "validation_data_path": None,
            "trainer": {"max_steps": 10**6, "checkpoint_every": None, "validation_every": None, "log_every": 10**6},
        },
        {"TOKENIZER": tokenizer},
    )
    return experiment.build(run_dir)


def timed_steps(step, steps: int) -> float:
    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "gutenberg_docs" / "valid.jsonl"))
    parser.add_argument("--tokenizer", default=str(ROOT / "models" / "bert-mini-gutenberg"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = declutr_trainer(args.data, args.tokenizer, Path(tmp))
        model, loader = trainer.model, trainer.data_loader
        batch_size, window = loader.batch_size, loader.reader._tokenizer.max_length
        config = model.encoder.model.config
        hf = loader.reader.tokenizer

        # declutr: the trainer's own step on the loader's batches
        batches = iter(loader)

        def declutr_step():
            nonlocal batches
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(loader)
                batch = next(batches)
            trainer._train_step([batch])

        # the plain model: same architecture and initial weights, full logits, torch AdamW
        from transformers import BertForMaskedLM

        plain = BertForMaskedLM(config)
        plain.load_state_dict(model.encoder.model.state_dict())
        plain.train()
        optimizer = torch.optim.AdamW(plain.parameters(), lr=1e-4)
        rng = np.random.default_rng(0)
        windows = [
            loader.reader.example(loader.index, int(r), rng) for r in loader.selection.records[: 64 * batch_size]
        ]
        texts = [json.loads(line)["text"] for line in Path(args.data).read_text().splitlines()]
        sentences = [s for t in texts for s in re.split(r"(?<=[.!?])\s+", " ".join(t.split())) if s]

        def plain_step(input_ids, attention_mask, labels):
            optimizer.zero_grad(set_to_none=True)
            output = plain(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
            output.loss.backward()
            torch.nn.utils.clip_grad_norm_(plain.parameters(), 1.0)
            optimizer.step()

        position = {"windows": 0, "sentences": 0}

        def packed_step():
            start = position["windows"] % (len(windows) - batch_size)
            position["windows"] += batch_size
            chosen = windows[start : start + batch_size]
            input_ids = torch.from_numpy(np.stack([e.anchors[0][0] for e in chosen]))
            labels = torch.from_numpy(np.stack([e.mlm_labels[0] for e in chosen]))
            plain_step(input_ids, torch.ones_like(input_ids), labels)

        sentence_tokens = []

        def sentences_step():
            start = position["sentences"] % (len(sentences) - batch_size)
            position["sentences"] += batch_size
            encoded = hf(sentences[start : start + batch_size], truncation=True, max_length=window, padding=True,
                         return_tensors="pt", return_special_tokens_mask=True)  # fmt: skip
            input_ids, special = encoded["input_ids"], encoded.pop("special_tokens_mask").bool()
            selected = (torch.rand(input_ids.shape) < 0.15) & ~special & encoded["attention_mask"].bool()
            labels = torch.where(selected, input_ids, -100)
            input_ids = torch.where(selected, hf.mask_token_id, input_ids)
            sentence_tokens.append(int(encoded["attention_mask"].sum()))
            plain_step(input_ids, encoded["attention_mask"], labels)

        real = batch_size * window
        best = {"declutr": 0.0, "padded, full logits": 0.0, "padded sentences, full logits": 0.0}
        for _ in range(args.rounds):
            best["declutr"] = max(best["declutr"], real * args.steps / timed_steps(declutr_step, args.steps))
            best["padded, full logits"] = max(
                best["padded, full logits"], real * args.steps / timed_steps(packed_step, args.steps)
            )
            sentence_tokens.clear()
            seconds = timed_steps(sentences_step, args.steps)
            best["padded sentences, full logits"] = max(
                best["padded sentences, full logits"], sum(sentence_tokens[1:]) / seconds
            )
    print(f"masked-LM pretraining, {config.num_hidden_layers} layers x {config.hidden_size}, vocabulary "
          f"{config.vocab_size}, batch {batch_size} x {window} tokens, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'variant':32s} {'real tokens/s':>14s} {'declutr is':>11s}")
    for name, rate in best.items():
        print(f"{name:32s} {rate:14,.0f} {best['declutr'] / rate:10.2f}x")


if __name__ == "__main__":
    main()
