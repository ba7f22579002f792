"""Corpus preparation behind ``bin/preprocess_openwebtext.py`` and ``bin/preprocess_wikitext103.py``:
turn locally available raw corpora into one document per line.

Every document is whitespace-collapsed (newlines included, so it fits on one line), optionally
lower-cased, and optionally dropped when it is shorter than ``min_length`` units of the named
tokenizer — counted exactly as the span sampler counts (subword tokens without special tokens,
or whitespace words), so that ``min_length = num_anchors * max_span_len * 2`` keeps exactly the
documents the reader can sample from.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from declutr.core.atomic import atomic_file
from declutr.core.errors import DeclutrError
from declutr.data.sources import collapse

_ARCHIVE = re.compile(r"\.(tar|tar\.xz|txz|xz|tar\.gz|tgz|tar\.bz2)$")
_WIKI_TITLE = re.compile(r"^ = [^=].* = $")
_WIKI_MARKERS = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))


def openwebtext_documents(paths: Iterable[Path]) -> Iterator[str]:
    """The texts of OpenWebText: ``.txt`` files in directories, in tar archives (``.tar.xz``,
    ``.xz``, ...), or in archives nested in archives (the released ``openwebtext.tar.xz`` holds
    ``urlsf_subset*.xz`` archives of ``.txt`` files). Sorted, so the output is reproducible."""
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise DeclutrError(f"{path}: no such file or directory")
        if path.is_dir():
            yield from openwebtext_documents(sorted(p for p in path.rglob("*") if p.is_file()))
        elif _ARCHIVE.search(path.name):
            try:
                with tarfile.open(path, "r:*") as archive:
                    yield from _archive_documents(archive)
            except tarfile.TarError as error:
                raise DeclutrError(f"{path}: not a readable tar archive ({error})") from None
        elif path.suffix == ".txt":
            yield path.read_text(encoding="utf-8", errors="replace")


def _archive_documents(archive: tarfile.TarFile) -> Iterator[str]:
    members = sorted((m for m in archive.getmembers() if m.isfile()), key=lambda m: m.name)
    for member in members:
        handle = archive.extractfile(member)
        if handle is None:
            continue
        data = handle.read()
        if _ARCHIVE.search(member.name):
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as nested:
                yield from _archive_documents(nested)
        elif member.name.endswith(".txt"):
            yield data.decode("utf-8", errors="replace")


def wikitext_documents(path: Path, restore_markers: bool = False) -> Iterator[str]:
    """The articles of a WikiText-103 raw file (``wiki.train.raw``): an article starts at a
    top-level title line `` = Title = `` (section titles `` = = ... = = `` stay inside it).
    ``restore_markers`` turns the dataset's `` @-@ ``, `` @,@ ``, `` @.@ `` back into ``-``, ``,``, ``.``."""
    path = Path(path)
    if not path.is_file():
        raise DeclutrError(f"{path}: no such file")
    lines: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            stripped = line.rstrip("\n")
            if _WIKI_TITLE.match(stripped) and lines:
                yield _wiki_article(lines, restore_markers)
                lines = []
            lines.append(stripped)
    if lines:
        yield _wiki_article(lines, restore_markers)


def _wiki_article(lines: list[str], restore_markers: bool) -> str:
    text = " ".join(lines)
    if restore_markers:
        for marker, character in _WIKI_MARKERS:
            text = text.replace(marker, character)
    return text


def write_documents(
    documents: Iterable[str],
    output: Path,
    lowercase: bool = False,
    min_length: int | None = None,
    tokenizer: str | None = None,
    unit: str = "subword",
    progress: bool = True,
    batch_size: int = 256,
) -> dict[str, int]:
    """Clean ``documents`` and write them one per line to ``output``; returns the counts
    (``written``, ``empty``, ``short``)."""
    from tqdm.auto import tqdm

    if min_length is not None and unit == "subword" and tokenizer is None:
        raise DeclutrError("--min-length with the subword unit needs --tokenizer (the model the sampler will use)")
    counter = None
    if min_length is not None and unit == "subword":
        from declutr.data.tokenizer import TransformerTokenizer

        counter = TransformerTokenizer(tokenizer)
    counts = {"written": 0, "empty": 0, "short": 0}
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pending: list[str] = []

    def flush(handle) -> None:
        if min_length is None:
            keep = [True] * len(pending)
        elif counter is not None:
            keep = [len(e.ids) >= min_length for e in counter.encode_batch(pending)]
        else:
            keep = [len(text.split()) >= min_length for text in pending]
        for text, ok in zip(pending, keep):
            if ok:
                handle.write(text + "\n")
                counts["written"] += 1
            else:
                counts["short"] += 1
        pending.clear()

    with atomic_file(output) as handle:  # a complete file or none
        for document in tqdm(documents, desc=f"writing {output.name}", unit=" docs", disable=not progress):
            text = collapse(document)
            if lowercase:
                text = text.lower()
            if not text:
                counts["empty"] += 1
                continue
            pending.append(text)
            if len(pending) >= batch_size:
                flush(handle)
        flush(handle)
    return counts


def add_common_arguments(parser) -> None:
    """The cleaning options both scripts share."""
    parser.add_argument("--lowercase", action="store_true", help="lower-case every document")
    parser.add_argument(
        "--min-length",
        type=int,
        default=None,
        help="drop documents shorter than this many units (e.g. num_anchors * max_span_len * 2 = 2048)",
    )
    parser.add_argument(
        "--tokenizer", default=None, help="the model whose tokenizer counts subword units (e.g. roberta-base)"
    )
    parser.add_argument(
        "--unit",
        choices=("subword", "whitespace"),
        default="subword",
        help="count subword tokens (default, as the sampler does) or whitespace words",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(documents: Iterable[str], args) -> int:
    """Write ``documents`` as the scripts' parsed ``args`` ask; print a summary; the exit status."""
    import sys

    try:
        counts = write_documents(
            documents,
            args.output,
            lowercase=args.lowercase,
            min_length=args.min_length,
            tokenizer=args.tokenizer,
            unit=args.unit,
            progress=not args.no_progress,
        )
    except DeclutrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.output}: {counts['written']} documents written, {counts['short']} too short, {counts['empty']} empty")
    return 0
