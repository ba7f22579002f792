"""``declutr evaluate MODEL --tasks T1,T2 --data-dir DIR``: SentEval-compatible evaluation."""

from __future__ import annotations

import click


@click.command("evaluate")
@click.argument("model")
@click.option(
    "--tasks",
    required=True,
    metavar="T1,T2,...",
    help="SentEval task names (STS12..STS16, STSBenchmark, SICKRelatedness, MR, CR, SUBJ, MPQA, SST2, "
    "SST5, TREC, MRPC, SICKEntailment) or 'all'.",
)
@click.option("--data-dir", required=True, type=click.Path(), help="SentEval's data/downstream folder.")
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Write the results as JSON here.")
@click.option(
    "--prototyping", is_flag=True, help="SentEval's faster classifier settings (5 folds, RMSprop, batch 128)."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Texts per forward pass.")
@click.option("--seed", type=int, default=1111, show_default=True, help="Classifier seed (SentEval's default 1111).")
@click.option("--pooler", default=None, help="Override the model's pooling (mean, cls, max, ...).")
@click.option("--device", default=None, help="cuda, cpu, ... (default: CUDA when available).")
@click.option(
    "--untokenized",
    is_flag=True,
    help="Read the untokenised original/ files of STS12-16 and STS-B instead of SentEval's tokenised ones.",
)
@click.option(
    "--pair-features",
    type=click.Choice(["senteval", "full"]),
    default="senteval",
    show_default=True,
    help="MRPC/SICK-E features: senteval = [|u-v|, u*v] as SentEval's code; full = [u, v, |u-v|, u*v].",
)
def command(model, tasks, data_dir, output, prototyping, batch_size, seed, pooler, device, untokenized, pair_features):
    """Score MODEL (a run directory, an exported model or a Hugging Face checkpoint) on SentEval tasks."""
    import json
    import time
    from pathlib import Path

    from declutr.evaluation.run import build_tasks, evaluate, format_table, parse_tasks

    # check the task names and data files before loading the model
    build_tasks(parse_tasks(tasks), data_dir, untokenized=untokenized, pair_features=pair_features)
    from declutr.inference.encoder import Encoder

    encoder = Encoder(model, device=device, batch_size=batch_size, pooler=pooler)
    started = time.perf_counter()

    def progress(name, result, seconds):
        click.echo(f"{name}: done in {seconds:.1f}s", err=True)

    results = evaluate(
        encoder,
        tasks,
        data_dir,
        seed=seed,
        prototyping=prototyping,
        untokenized=untokenized,
        pair_features=pair_features,
        on_task=progress,
    )
    results["model"] = str(model)
    results["seconds"] = round(time.perf_counter() - started, 1)
    click.echo(format_table(results))
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        click.echo(f"results written to {output}", err=True)
