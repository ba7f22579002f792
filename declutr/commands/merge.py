"""``declutr merge TRAINED [--start MODEL] --alpha A -o OUT``: interpolate a trained model with its start model.

``--sweep A1,A2,...`` instead of ``--alpha`` scores every alpha on held-out documents
(same-document retrieval, ``declutr.evaluation.same_document``) and on STS-B dev (cosine
Spearman, MTEB's protocol on the untokenised file), prints the table and writes the best as OUT.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

#: same-document figures a sweep can select by (higher is better), as ``<mode>_<metric>``
RETRIEVAL_METRICS = ("recall@1", "recall@10", "mrr", "ndcg@10")
MODES = ("near", "far")
SELECTABLE = (*(f"{mode}_{metric}" for mode in MODES for metric in RETRIEVAL_METRICS), "stsb")
#: the table's columns: (heading, mode or None for STS-B, metric)
COLUMNS = (
    ("near R@1", "near", "recall@1"),
    ("near MRR", "near", "mrr"),
    ("far R@1", "far", "recall@1"),
    ("far MRR", "far", "mrr"),
    ("STS-B dev", None, "stsb"),
)


def parse_alphas(text: str) -> list[float]:
    """``0,0.25,0.5`` -> ``[0.0, 0.25, 0.5]`` (each in [0, 1], duplicates dropped, order kept)."""
    from declutr.core.errors import DeclutrError
    from declutr.io.merge import check_alpha

    alphas = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            value = float(part)
        except ValueError:
            raise DeclutrError(f"--sweep: {part.strip()!r} is not a number (e.g. --sweep 0,0.25,0.5,0.75,1)") from None
        alphas.append(check_alpha(value))
    if not alphas:
        raise DeclutrError("--sweep: no alphas given (e.g. --sweep 0,0.25,0.5,0.75,1)")
    return list(dict.fromkeys(alphas))


def stsb_dev_pairs(sts_dir: str) -> tuple:
    """STS-B dev as MTEB reads it (the untokenised ``original/sts-dev.csv``, text as stored): the
    STSBenchmark task's own reader, ``(first, second, scores)``."""
    from declutr.evaluation.mteb import mteb_task

    return mteb_task("STSBenchmark", sts_dir).load("dev")


def stsb_score(embed: Callable, pairs: tuple[list[str], list[str], list[float]]) -> float:
    """Cosine Spearman x 100 of ``embed`` on ``pairs``."""
    from declutr.evaluation.tasks.base import correlations, cosine_rows, embed_all

    first, second, scores = pairs
    return 100 * correlations(cosine_rows(*embed_all(embed, first, second)), scores)["spearman"]


def sweep(
    interpolation: Any,
    alphas: Sequence[float],
    embedder: Callable[[dict], Callable],
    passages: dict | None = None,
    sts_pairs: tuple | None = None,
    select: str = "near_mrr",
    on_alpha: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Score every alpha; ``{"select", "best_alpha", "rows": [{"alpha", "near", "far", "stsb"}], "bm25"}``.

    ``embedder(state_dict)`` returns an ``embed(texts) -> [N, D]`` function of the transformer
    holding those weights; ``passages`` are held-out documents cut by
    ``declutr.evaluation.same_document.prepare_same_document`` (near and far), ``sts_pairs`` STS-B
    dev from :func:`stsb_dev_pairs`. Same-document retrieval figures are ``{mode: {"model": ...,
    "queries": ...}}`` per row (BM25, which does not depend on alpha, scored once); STS-B dev is
    cosine Spearman x 100. The best row by ``select`` wins (the first of equals)."""
    rows, bm25 = [], None
    for alpha in alphas:
        started = time.perf_counter()
        embed = embedder(interpolation.state_dict(alpha))
        row: dict[str, Any] = {"alpha": alpha}
        if passages is not None:
            from declutr.evaluation.same_document import score_same_document

            result = score_same_document(embed, passages, bm25=bm25 is None)
            if bm25 is None:
                bm25 = {mode: result[mode].get("bm25") for mode in MODES}
            for mode in MODES:
                row[mode] = {key: value for key, value in result[mode].items() if key != "bm25"}
        if sts_pairs is not None:
            row["stsb"] = stsb_score(embed, sts_pairs)
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        if on_alpha is not None:
            on_alpha(row)
    best = max(rows, key=lambda row: selected_value(row, select))  # max keeps the first of equals
    return {"select": select, "best_alpha": best["alpha"], "rows": rows, "bm25": bm25}


def selected_value(row: dict, metric: str) -> float:
    """The figure ``metric`` (``stsb`` or ``<mode>_<metric>``) of a sweep row."""
    if metric == "stsb":
        return float(row["stsb"])
    mode, name = metric.split("_", 1)
    return float(row[mode]["model"][name])


def _figure(figures: dict | None, metric: str, digits: int = 4) -> str:
    value = (figures or {}).get(metric)
    return "" if value is None else f"{value:.{digits}f}"


def format_sweep(result: dict) -> str:
    """The sweep as a text table (a BM25 row first when scored), the selected alpha marked ``*``."""
    rows, bm25 = result["rows"], result.get("bm25") or {}
    columns = [(heading, mode, metric) for heading, mode, metric in COLUMNS if (mode or metric) in rows[0]]
    table = [["alpha", *(heading for heading, _, _ in columns)]]
    if any(bm25.values()):
        table.append(["BM25", *(_figure(bm25.get(mode), metric) if mode else "" for _, mode, metric in columns)])
    for row in rows:
        cells = [
            _figure(row[mode]["model"], metric) if mode else _figure(row, metric, 2) for _, mode, metric in columns
        ]
        table.append([f"{row['alpha']:g}{' *' if row['alpha'] == result['best_alpha'] else ''}", *cells])
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    lines.append(f"selected alpha {result['best_alpha']:g} by {result['select']} (*)")
    return "\n".join(lines)


def _check_sweep_options(alpha, sweep_spec, documents, sts_dir, select):
    from declutr.core.errors import DeclutrError

    if alpha is not None and sweep_spec is not None:
        raise DeclutrError("give --alpha or --sweep, not both")
    if alpha is None and sweep_spec is None:
        raise DeclutrError("give --alpha A (the trained model's weight) or --sweep A1,A2,... to choose one")
    if sweep_spec is None:
        if documents or sts_dir or select:
            raise DeclutrError("--documents, --sts-dir and --select apply to --sweep only")
        return None, None
    if not documents and not sts_dir:
        raise DeclutrError("--sweep needs held-out documents (--documents FILE) and/or STS-B dev (--sts-dir DIR)")
    select = select or ("near_mrr" if documents else "stsb")
    if select == "stsb" and not sts_dir:
        raise DeclutrError("--select stsb needs --sts-dir (SentEval's data folder)")
    if select != "stsb" and not documents:
        raise DeclutrError(f"--select {select} needs --documents FILE")
    return parse_alphas(sweep_spec), select


@click.command("merge")
@click.argument("trained")
@click.option(
    "--start",
    default=None,
    metavar="MODEL",
    help="The start model (a Hugging Face name or folder; default: model.encoder.model_name of the run's config.json).",
)
@click.option(
    "--alpha", type=float, default=None, help="The trained model's weight: alpha * trained + (1 - alpha) * start."
)
@click.option(
    "-o", "--output", required=True, type=click.Path(file_okay=False), help="The folder to write the merged export to."
)
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option(
    "--sweep", "sweep_spec", default=None, metavar="A1,A2,...", help="Score these alphas and keep the best as OUT."
)
@click.option(
    "--documents",
    type=click.Path(),
    default=None,
    help="--sweep: held-out documents (any format training reads) for same-document retrieval.",
)
@click.option("--sts-dir", type=click.Path(), default=None, help="--sweep: SentEval's data folder, for STS-B dev.")
@click.option(
    "--select",
    type=click.Choice(SELECTABLE),
    default=None,
    help="--sweep: the figure that picks the alpha (default near_mrr, or stsb without --documents).",
)
@click.option(
    "--passage-words", type=click.IntRange(min=1), default=64, show_default=True, help="--sweep: passage length."
)
@click.option(
    "--pairs-per-document",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="--sweep: query pairs per document.",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="--sweep: texts per forward pass."
)
@click.option("--device", default=None, help="--sweep: cuda, cpu, ... (default: CUDA when available).")
def command(
    trained,
    start,
    alpha,
    output,
    force,
    sweep_spec,
    documents,
    sts_dir,
    select,
    passage_words,
    pairs_per_document,
    batch_size,
    device,
):
    """Interpolate TRAINED (a run directory or an export) with the model it started from; write a full export to OUT."""
    from declutr.io.merge import Interpolation, check_alpha, check_output, resolve_trained, start_from_run

    alphas, select = _check_sweep_options(alpha, sweep_spec, documents, sts_dir, select)
    if alpha is not None:
        alpha = check_alpha(alpha)
    export, run_dir = resolve_trained(trained)
    start_name = start_from_run(trained) if start is None else start
    check_output(output, export, run_dir, start_name, replace=force)
    sts_pairs = stsb_dev_pairs(sts_dir) if alphas and sts_dir else None
    passages = None
    if alphas and documents:  # cut (and checked) before any model loads
        from declutr.evaluation.same_document import prepare_same_document

        passages = prepare_same_document(
            documents, passage_words=passage_words, pairs_per_document=pairs_per_document, modes=MODES
        )

    click.echo(f"merging {export} with {start_name}", err=True)
    interpolation = Interpolation(trained, start)
    for line in interpolation.summary():
        click.echo(line, err=True)
    extra = {}
    if alphas:
        result = sweep(
            interpolation,
            alphas,
            _encoder_embedder(export, device, batch_size),
            passages=passages,
            sts_pairs=sts_pairs,
            select=select,
            on_alpha=lambda row: click.echo(f"alpha {row['alpha']:g}: done in {row['seconds']:.1f}s", err=True),
        )
        click.echo(format_sweep(result))
        alpha = result["best_alpha"]
        extra["sweep"] = {
            **result,
            **{name: v for name, v in (("documents", documents), ("sts_dir", sts_dir)) if v},
            **({"passage_words": passage_words, "pairs_per_document": pairs_per_document} if documents else {}),
        }
    interpolation.save(alpha, output, replace=force, **extra)
    click.echo(f"merged model (alpha {alpha:g}) written to {output}", err=True)


def _encoder_embedder(export: Path, device: str | None, batch_size: int) -> Callable[[dict], Callable]:
    """``embedder(state_dict)``: the trained export's Encoder (its tokenizer and pooling) with the
    transformer's weights replaced, the same computation as ``Encoder(OUT)`` on the written merge."""
    from declutr.inference.encoder import Encoder
    from declutr.io.merge import quiet_loading

    with quiet_loading():  # transformers' report of the unused masked-LM head, said once already
        encoder = Encoder(export, device=device, batch_size=batch_size)

    def embedder(state: dict) -> Callable:
        missing, unexpected = encoder.model.load_state_dict(state, strict=False)
        if unexpected or any(not name.startswith("pooler.") for name in missing):
            raise RuntimeError(f"merged weights do not fit the export's transformer: {unexpected or missing}")
        return lambda texts: encoder.embed(list(texts), show_progress=False)

    return embedder
