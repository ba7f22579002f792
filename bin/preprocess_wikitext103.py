#!/usr/bin/env python
"""Turn the WikiText-103 raw files into one article per line.

    python bin/preprocess_wikitext103.py wikitext-103-raw/wiki.train.raw data/wikitext103_train.txt \
        --min-length 2048 --tokenizer distilroberta-base

An article starts at a top-level title line `` = Title = ``; its lines (section titles
included) are joined and whitespace is collapsed. ``--restore-markers`` turns the dataset's
`` @-@ ``, `` @,@ ``, `` @.@ `` back into ``-``, ``,``, ``.``; ``--lowercase`` lower-cases;
``--min-length`` drops articles shorter than that many units of ``--tokenizer``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from declutr.data.preprocess import (
    add_common_arguments,
    run,
    wikitext_documents,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help="a WikiText-103 raw file, e.g. wiki.train.raw")
    parser.add_argument("output", type=Path, help="the one-document-per-line text file to write")
    parser.add_argument("--restore-markers", action="store_true", help='turn " @-@ " etc. back into "-", ",", "."')
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run(wikitext_documents(args.input, args.restore_markers), args)


if __name__ == "__main__":
    sys.exit(main())
