#!/usr/bin/env python
"""Turn locally available OpenWebText archives into one document per line.

    python bin/preprocess_openwebtext.py openwebtext.tar.xz data/openwebtext.txt \
        --min-length 2048 --tokenizer distilroberta-base

Inputs may be the released ``openwebtext.tar.xz`` (archives of ``.txt`` files inside an
archive), its extracted ``urlsf_subset*.xz`` files, or directories of ``.txt`` files.
Whitespace is collapsed; ``--lowercase`` lower-cases; ``--min-length`` drops documents shorter
than that many units of ``--tokenizer`` (the paper kept documents of at least 2048 tokens).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from declutr.data.preprocess import (
    add_common_arguments,
    openwebtext_documents,
    run,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="archives, .txt files or directories")
    parser.add_argument("output", type=Path, help="the one-document-per-line text file to write")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run(openwebtext_documents(args.inputs), args)


if __name__ == "__main__":
    sys.exit(main())
