"""``declutr embed MODEL INPUT -o OUT.npy``: embed a text or JSON-lines file of any size."""

from __future__ import annotations

import click

from declutr.commands import precision_option


@click.command("embed")
@click.argument("model")
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False))
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="The .npy to write ([N, D] float32)."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Texts per forward pass.")
@click.option("--normalize", is_flag=True, help="L2-normalise every embedding.")
@click.option(
    "--format",
    "input_format",
    type=click.Choice(["auto", "text", "jsonl"]),
    default="auto",
    show_default=True,
    help="text: one text per line; jsonl: a JSON string or object per line; auto: jsonl for .jsonl/.ndjson.",
)
@click.option("--field", default="text", show_default=True, help="The JSON-lines field holding the text.")
@click.option("--pooler", default=None, help="Override the model's pooling (mean, cls, max, ...).")
@click.option(
    "--long-text",
    type=click.Choice(["truncate", "chunk"]),
    default="truncate",
    show_default=True,
    help="A text longer than the model's limit: truncate it, or chunk it into windows of the limit and combine them.",
)
@click.option(
    "--stride",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="With --long-text chunk: the tokens each window shares with the one before it.",
)
@click.option("--device", default=None, help="cuda, cpu, ... (default: CUDA when available).")
@precision_option
def command(
    model, input_file, output, batch_size, normalize, input_format, field, pooler, long_text, stride, device, precision
):
    """Embed every text of INPUT with MODEL into OUT.npy, in order, streaming (constant memory)."""
    from pathlib import Path

    from declutr.core.errors import DeclutrError
    from declutr.inference.bulk import embed_file
    from declutr.inference.encoder import Encoder

    if not Path(input_file).is_file():
        raise DeclutrError(f"input file {input_file} does not exist")
    if not output.endswith(".npy"):
        raise DeclutrError(f"output {output} must end with .npy")
    if stride and long_text != "chunk":
        raise DeclutrError(f"--stride {stride} applies to --long-text chunk only")
    encoder = Encoder(
        model,
        device=device,
        batch_size=batch_size,
        pooler=pooler,
        long_text=long_text,
        stride=stride,
        precision=precision,
    )
    count, dimension = embed_file(
        encoder, input_file, output, normalize=normalize, input_format=input_format, field=field, warn_long_texts=False
    )
    click.echo(f"wrote {count} x {dimension} embeddings to {output}", err=True)
    click.echo(encoder.long_text_summary(encoder.long_texts, count), err=True)
