"""Tiny SentEval data folders in the exact file formats and encodings of ../shared/data/senteval/SOURCE.md.

Texts are built so that a bag-of-words embedding can learn every task: the label (or score) is
carried by marker words. Deterministic.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np

from declutr.testing import WORDS

#: filler words from declutr.testing's word list: "the", "a", "river" ... "captain", "village", "doctor"
FILLER = [*WORDS[:2], *WORDS[-20:-10], *WORDS[-5:-3]]


def _sentence(rng: random.Random, *markers: str, length: int = 6) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(2, length))] + list(markers)
    rng.shuffle(words)
    return " ".join(words)


def _sts_pair(rng: random.Random, score: float) -> tuple[str, str]:
    """Pairs sharing round(score) of five key words, so similarity tracks the score."""
    keys = [f"key{rng.randint(0, 999)}" for _ in range(5)]
    shared = round(score)
    other = [f"other{rng.randint(0, 999)}" for _ in range(5 - shared)]
    return " ".join(keys), " ".join(keys[:shared] + other)


def write_sts(root: Path, folder: str, datasets: list[str], pairs: int = 30, seed: int = 0) -> None:
    rng = random.Random(seed)
    for variant in (root / "STS" / folder, root / "STS" / folder / "original"):
        variant.mkdir(parents=True, exist_ok=True)
        for dataset in datasets:
            inputs, gold = [], []
            for i in range(pairs):
                score = rng.uniform(0, 5)
                a, b = _sts_pair(rng, score)
                inputs.append(f"{a}\t{b}")
                gold.append("" if i % 10 == 3 else f"{score:.3f}")  # every tenth pair unscored
            (variant / f"STS.input.{dataset}.txt").write_text("\n".join(inputs) + "\n", encoding="utf-8")
            (variant / f"STS.gs.{dataset}.txt").write_text("\n".join(gold) + "\n", encoding="utf-8")


def _relatedness_rows(rng: random.Random, count: int, low: float, high: float):
    for i in range(count):
        score = low + (high - low) * ((i * 37) % count) / (count - 1)
        a, b = _sts_pair(rng, (score - low) / (high - low) * 5)
        yield score, a, b


def write_all(root: Path, seed: int = 0) -> Path:
    """Every SentEval downstream task's files under ``root`` (a data/downstream folder)."""
    rng = random.Random(seed)
    sts = {
        "STS12-en-test": ["MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"],
        "STS13-en-test": ["FNWN", "headlines", "OnWN"],
        "STS14-en-test": ["deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"],
        "STS15-en-test": ["answers-forums", "answers-students", "belief", "headlines", "images"],
        "STS16-en-test": ["answer-answer", "headlines", "plagiarism", "postediting", "question-question"],
    }
    for index, (folder, datasets) in enumerate(sts.items()):
        write_sts(root, folder, datasets, seed=seed + index)

    # STS Benchmark: genre, file, year, id, score, s1, s2 (the original files have extra columns on some lines)
    for variant in ("", "original"):
        folder = root / "STS" / "STSBenchmark" / variant
        folder.mkdir(parents=True, exist_ok=True)
        for split, count in (("train", 200), ("dev", 60), ("test", 60)):
            lines = []
            for i, (score, a, b) in enumerate(_relatedness_rows(rng, count, 0.0, 5.0)):
                extra = "\tsource-a\tsource-b" if variant and i % 7 == 0 else ""
                lines.append(f"main-captions\tMSRvid\t2012test\t{i:04d}\t{score:.3f}\t{a}\t{b}{extra}")
            (folder / f"sts-{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # SICK: header + pair_ID, sentence_A, sentence_B, relatedness_score (1-5), entailment_judgment
    (root / "SICK").mkdir(parents=True, exist_ok=True)
    labels = ["CONTRADICTION", "NEUTRAL", "ENTAILMENT"]
    for name, count in (("SICK_train.txt", 240), ("SICK_trial.txt", 60), ("SICK_test_annotated.txt", 90)):
        lines = ["pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"]
        for i, (score, a, b) in enumerate(_relatedness_rows(rng, count, 1.0, 5.0)):
            label = labels[i % 3]
            lines.append(f"{i + 1}\t{a} {label.lower()}word\t{b}\t{score:.1f}\t{label}")
        (root / "SICK" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    # MR, CR, SUBJ, MPQA: one sentence a line, latin-1 (MR carries non-UTF-8 bytes)
    for folder, (positive, negative) in {
        "MR": ("rt-polarity.pos", "rt-polarity.neg"),
        "CR": ("custrev.pos", "custrev.neg"),
        "SUBJ": ("subj.objective", "subj.subjective"),
        "MPQA": ("mpqa.pos", "mpqa.neg"),
    }.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for filename, marker in ((positive, "goodword"), (negative, "badword")):
            lines = [_sentence(rng, marker) + (" café" if i == 0 else "") for i in range(40)]
            (root / folder / filename).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))

    # SST: binary "sentence<TAB>label", fine "label sentence"
    for folder, classes in (("binary", 2), ("fine", 5)):
        (root / "SST" / folder).mkdir(parents=True, exist_ok=True)
        for split, count in (("train", 100), ("dev", 40), ("test", 40)):
            lines = []
            for i in range(count):
                label = i % classes
                text = _sentence(rng, f"class{label}word")
                lines.append(f"{text}\t{label}" if classes == 2 else f"{label} {text}")
            (root / "SST" / folder / f"sentiment-{split}").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # TREC: "COARSE:fine question", latin-1
    (root / "TREC").mkdir(parents=True, exist_ok=True)
    coarse = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    for filename, count in (("train_5500.label", 300), ("TREC_10.label", 36)):
        lines = [f"{coarse[i % 6]}:fine {_sentence(rng, coarse[i % 6].lower() + 'word')} ?" for i in range(count)]
        lines[0] = lines[0] + " naïve"
        (root / "TREC" / filename).write_bytes(("\n".join(lines) + "\n").encode("latin-1"))

    # MRPC: UTF-8 with BOM, CRLF, header + Quality, #1 ID, #2 ID, #1 String, #2 String
    (root / "MRPC").mkdir(parents=True, exist_ok=True)
    for filename, count in (("msr_paraphrase_train.txt", 80), ("msr_paraphrase_test.txt", 40)):
        lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for i in range(count):
            quality = i % 2
            a = _sentence(rng, "paraphraseword" if quality else "differentword")
            # a paraphrase repeats #1's words, so SentEval's symmetric [|u-v|, u*v] can see the label
            b = _sentence(rng)
            lines.append(f"{quality}\t{1000 + i}\t{2000 + i}\t{a}\t{a if quality else b}")
        (root / "MRPC" / filename).write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))

    write_snli(root / "SNLI", rng)
    write_coco(root / "COCO", seed=seed)
    write_probing(root.parent / "probing", rng)
    return root


#: SNLI's labels; the tiny files carry each one as a marker word in s2
SNLI_LABELS = ("entailment", "neutral", "contradiction")


def write_snli(folder: Path, rng: random.Random, counts=(("train", 120), ("dev", 30), ("test", 30))) -> None:
    """``s1.SPLIT``, ``s2.SPLIT`` (latin-1, one tokenised sentence a line) and ``labels.SPLIT``."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in counts:
        labels = [SNLI_LABELS[i % 3] for i in range(count)]
        first = [_sentence(rng) + (" déjà" if i == 0 else "") for i in range(count)]
        second = [_sentence(rng, f"{label}word") for label in labels]
        (folder / f"s1.{split}").write_bytes(("\n".join(first) + "\n").encode("latin-1"))
        (folder / f"s2.{split}").write_bytes(("\n".join(second) + "\n").encode("latin-1"))
        (folder / f"labels.{split}").write_text("\n".join(labels) + "\n", encoding="utf-8")


def coco_split(images: int, seed: int, dim: int = 8, captions_per_image: int = 6) -> dict:
    """One COCO split as SentEval's pickles hold it: ``features`` [images, dim], per image the ids
    of its captions (6 here; SentEval uses the first 5), ``captions`` id -> ``cleaned_caption``.
    Image ``i`` shows concept ``i % dim`` (its feature's largest entry), which its captions name."""
    rng = np.random.RandomState(seed)
    concepts = np.arange(images) % dim
    features = (0.2 * rng.rand(images, dim) + 2 * np.eye(dim)[concepts]).astype(np.float32)
    captions, image_to_caption_ids = {}, []
    for image in range(images):
        ids = [1000 * image + k for k in range(captions_per_image)]
        image_to_caption_ids.append(ids)
        for k, caption_id in enumerate(ids):
            captions[caption_id] = {
                "cleaned_caption": f"a photo of concept{concepts[image]} number {k}",
                "id": caption_id,
            }
    return {"features": features, "image_to_caption_ids": image_to_caption_ids, "captions": captions}


def write_coco(folder: Path, seed: int = 0, images=(("train", 40), ("valid", 20), ("test", 20))) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, (split, count) in enumerate(images):
        (folder / f"{split}.pkl").write_bytes(pickle.dumps(coco_split(count, seed + index), protocol=2))


#: each probing task's labels in the tiny files (Depth's numbers sort as strings, as in SentEval)
PROBING_LABELS = {
    "sentence_length.txt": ["0", "1", "2", "3", "4", "5"],
    "word_content.txt": ["apple", "bridge", "candle", "dragon"],
    "tree_depth.txt": ["5", "6", "7", "8", "9", "10", "11", "12"],
    "top_constituents.txt": ["NP_VP_.", "PP_NP_VP_.", "OTHER"],
    "bigram_shift.txt": ["O", "I"],
    "past_present.txt": ["PRES", "PAST"],
    "subj_number.txt": ["NN", "NNS"],
    "obj_number.txt": ["NN", "NNS"],
    "odd_man_out.txt": ["O", "C"],
    "coordination_inversion.txt": ["O", "I"],
}
#: instances per partition in the tiny probing files
PROBING_COUNTS = {"tr": 96, "va": 24, "te": 24}


def write_probing(folder: Path, rng: random.Random) -> None:
    """The 10 probing files: ``tr|va|te<TAB>label<TAB>sentence`` (top_constituents.txt carries an
    extra field before the sentence; the sentence is the last field), ordered by partition."""
    folder.mkdir(parents=True, exist_ok=True)
    for filename, labels in PROBING_LABELS.items():
        lines = []
        for partition, count in PROBING_COUNTS.items():
            for i in range(count):
                label = labels[i % len(labels)]
                marker = f"m{label.lower().replace('_', '').replace('.', '')}x"
                extra = "\t(ROOT (S ...))" if filename == "top_constituents.txt" else ""
                lines.append(f"{partition}\t{label}{extra}\t{_sentence(rng, marker, marker)}")
        (folder / filename).write_text("\n".join(lines) + "\n", encoding="utf-8")
