"""``declutr evaluate MODEL --tasks T1,T2 --data-dir DIR``: SentEval-compatible evaluation."""

from __future__ import annotations

import click

from declutr.commands import precision_option


@click.command("evaluate")
@click.argument("model")
@click.option(
    "--tasks",
    required=True,
    metavar="T1,T2,...",
    help="SentEval task names (STS12..STS16, STSBenchmark, SICKRelatedness, MR, CR, SUBJ, MPQA, SST2, "
    "SST5, TREC, MRPC, SICKEntailment, SNLI, ImageCaptionRetrieval, Length, WordContent, Depth, "
    "TopConstituents, BigramShift, Tense, SubjNumber, ObjNumber, OddManOut, CoordinationInversion) "
    "or a group: downstream (18 tasks), probing (10), all.",
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
@click.option(
    "--probing-dir",
    type=click.Path(),
    default=None,
    help="SentEval's data/probing folder for the probing tasks (default: 'probing' beside --data-dir).",
)
@click.option(
    "--protocol",
    type=click.Choice(["senteval", "mteb"]),
    default="senteval",
    show_default=True,
    help="senteval = SentEval's protocol; mteb = MTEB's STS protocol (STS12-16, STSBenchmark, SICKRelatedness: "
    "cosine Spearman over all scored pairs pooled).",
)
@click.option(
    "--normalize/--no-normalize",
    default=None,
    help="L2-normalise the embeddings, or use the raw pooled vectors (default: the model's own, i.e. "
    "normalised when its sentence-transformers modules.json lists Normalize).",
)
@precision_option
def command(
    model,
    tasks,
    data_dir,
    output,
    prototyping,
    batch_size,
    seed,
    pooler,
    device,
    untokenized,
    pair_features,
    probing_dir,
    protocol,
    normalize,
    precision,
):
    """Score MODEL (a run directory, an exported model or a Hugging Face checkpoint) on SentEval tasks."""
    import json
    import time
    from pathlib import Path

    from declutr.evaluation.run import evaluate, format_table, select_tasks

    # the task names and data files are checked before the model loads
    selected = select_tasks(
        tasks,
        data_dir,
        untokenized=untokenized,
        pair_features=pair_features,
        protocol=protocol,
        probing_dir=probing_dir,
    )
    from declutr.inference.encoder import Encoder

    encoder = Encoder(
        model, device=device, batch_size=batch_size, pooler=pooler, normalize=normalize, precision=precision
    )
    started = time.perf_counter()

    def progress(name, result, seconds):
        click.echo(f"{name}: done in {seconds:.1f}s", err=True)

    results = evaluate(encoder, selected, seed=seed, prototyping=prototyping, on_task=progress, protocol=protocol)
    results["model"] = str(model)
    results["seconds"] = round(time.perf_counter() - started, 1)
    click.echo(format_table(results))
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        click.echo(f"results written to {output}", err=True)
