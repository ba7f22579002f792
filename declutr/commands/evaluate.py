"""``declutr evaluate MODEL``: SentEval/MTEB tasks (``--tasks T1,T2 --data-dir DIR``) and/or
same-document retrieval on held-out documents (``--documents FILE``), on one cached encoder.

Every input is checked before the model loads; each evaluation then adds its table to the
output and its results to the JSON file (another evaluation plugs in the same way: check its
input in ``command``, score it with ``embed``, add a table and a key)."""

from __future__ import annotations

import click

from declutr.commands import precision_option


@click.command("evaluate")
@click.argument("model")
@click.option(
    "--tasks",
    default=None,
    metavar="T1,T2,...",
    help="SentEval task names (STS12..STS16, STSBenchmark, SICKRelatedness, MR, CR, SUBJ, MPQA, SST2, "
    "SST5, TREC, MRPC, SICKEntailment, SNLI, ImageCaptionRetrieval, Length, WordContent, Depth, "
    "TopConstituents, BigramShift, Tense, SubjNumber, ObjNumber, OddManOut, CoordinationInversion) "
    "or a group: downstream (18 tasks), probing (10), all.",
)
@click.option("--data-dir", default=None, type=click.Path(), help="SentEval's data/downstream folder (with --tasks).")
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Write the results as JSON here.")
@click.option(
    "--prototyping", is_flag=True, help="SentEval's faster classifier settings (5 folds, RMSprop, batch 128)."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Texts per forward pass.")
@click.option("--seed", type=int, default=1111, show_default=True, help="Classifier seed (SentEval's default 1111).")
@click.option("--pooler", default=None, help="Override the model's pooling (mean, cls, max, ...).")
@click.option(
    "--device",
    default=None,
    help="cuda, cpu, ...: where the model embeds and ImageCaptionRetrieval's ranking model trains "
    "(default: CUDA when available).",
)
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
@click.option(
    "--documents",
    type=click.Path(),
    default=None,
    help="Held-out documents for same-document retrieval (docs/evaluation.md), in any format training reads: "
    "text (one document per line), JSON lines or CSV with a text field, a folder or a glob; .gz too.",
)
@click.option(
    "--passage-words", type=click.IntRange(min=1), default=64, show_default=True, help="Words per passage (w)."
)
@click.option(
    "--pairs-per-document",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="At most this many query/candidate pairs per document (P); a document gives min(P, words // (4 w)).",
)
@click.option(
    "--mode",
    "modes",
    default="near,far",
    show_default=True,
    metavar="near,far",
    help="near: adjacent passages at a segment's middle; far: passages at its first and third quarters.",
)
@click.option(
    "--beir",
    type=click.Path(),
    default=None,
    help="A BEIR-format folder of your own labels (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv): nDCG@10, "
    "MRR@10, recall@100 and MAP@100 as BEIR and MTEB compute them (docs/beir.md).",
)
@click.option(
    "--beir-split", default="test", show_default=True, help="--beir: the qrels file to score (qrels/SPLIT.tsv)."
)
@click.option("--no-bm25", is_flag=True, help="Leave out the BM25 rows of the same-document and BEIR tables.")
@click.option(
    "--no-cache",
    is_flag=True,
    help="Encode everything again: neither read nor write the embedding cache ($DECLUTR_CACHE, default "
    "~/.cache/declutr/embeddings, keyed by the model's files, the embedding settings and the texts).",
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
    documents,
    passage_words,
    pairs_per_document,
    modes,
    beir,
    beir_split,
    no_bm25,
    no_cache,
    precision,
):
    """Score MODEL (a run directory, an exported model or a Hugging Face checkpoint) on SentEval
    tasks (--tasks), by same-document retrieval on held-out documents (--documents) and/or by
    retrieval on a BEIR-format folder of labelled queries (--beir)."""
    import json
    import time
    from pathlib import Path

    from declutr.core.atomic import atomic_write_text
    from declutr.core.errors import DeclutrError

    if not tasks and not documents and not beir:
        raise DeclutrError(
            "nothing to evaluate: give --tasks (SentEval or MTEB tasks, with --data-dir), --documents "
            "(held-out documents for same-document retrieval) and/or --beir (a BEIR-format folder)"
        )
    # every input is checked before the model loads
    selected = prepared = beir_data = None
    if tasks:
        from declutr.evaluation.run import select_tasks

        if data_dir is None:
            raise DeclutrError("--tasks needs --data-dir (SentEval's data/downstream folder)")
        selected = select_tasks(
            tasks,
            data_dir,
            untokenized=untokenized,
            pair_features=pair_features,
            protocol=protocol,
            probing_dir=probing_dir,
        )
    if documents:
        from declutr.evaluation.same_document import prepare_same_document

        prepared = prepare_same_document(
            documents,
            passage_words=passage_words,
            pairs_per_document=pairs_per_document,
            modes=[mode.strip() for mode in modes.split(",") if mode.strip()],
        )
    if beir:
        from declutr.evaluation.beir import load_beir

        beir_data = load_beir(beir, beir_split)
    from declutr.inference.cache import CachedEncoder

    embed = CachedEncoder(
        model,
        enabled=not no_cache,
        device=device,
        batch_size=batch_size,
        pooler=pooler,
        normalize=normalize,
        precision=precision,
    )
    started = time.perf_counter()
    results: dict = {}
    tables = []
    if selected is not None:
        from declutr.evaluation.run import evaluate, format_table

        def progress(name, result, seconds):
            click.echo(f"{name}: done in {seconds:.1f}s", err=True)

        results = evaluate(
            embed, selected, seed=seed, prototyping=prototyping, on_task=progress, protocol=protocol, device=device
        )
        tables.append(format_table(results))
    if prepared is not None:
        results["same_document"] = _same_document(embed, prepared, model, documents, not no_bm25)
        tables.append(results["same_document"]["table"])
    if beir_data is not None:
        from declutr.evaluation.beir import evaluate_beir, format_beir_table
        from declutr.evaluation.same_document import display_name

        results["beir"] = evaluate_beir(embed, beir_data, split=beir_split, bm25=not no_bm25)
        tables.append(format_beir_table(results["beir"], display_name(model)))
    results["model"] = str(model)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["cache"] = _cache_summary(embed)
    click.echo("\n\n".join(tables))
    if embed.enabled:
        click.echo(
            f"embeddings: {embed.hits} call(s) from the cache, {embed.misses} encoded ({embed.directory})", err=True
        )
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output, json.dumps(results, indent=2) + "\n")
        click.echo(f"results written to {output}", err=True)


def _same_document(embed, prepared: dict, model: str, documents: str, bm25: bool) -> dict:
    """Same-document retrieval of ``embed`` (and BM25) on pairs cut already: results, protocol, table."""
    from declutr.evaluation.run import embedding_protocol
    from declutr.evaluation.same_document import display_name, format_same_document, protocol, score_same_document

    pairs = next(iter(prepared.values()))
    results = score_same_document(embed, prepared, bm25=bm25)
    return {
        "results": results,
        "protocol": {
            **protocol(pairs.passage_words, pairs.pairs_per_document, str(documents)),
            **embedding_protocol(embed),
        },
        "table": format_same_document(results, display_name(model)),
    }


def _cache_summary(embed) -> dict:
    return {
        "directory": None if embed.directory is None else str(embed.directory),
        "calls_from_cache": embed.hits,
        "calls_encoded": embed.misses,
    }
