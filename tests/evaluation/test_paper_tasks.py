"""The tasks of the DeCLUTR paper's headline beyond the 16 downstream ones: the 10 probing
tasks, SNLI and ImageCaptionRetrieval, and the paper's group averages."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from declutr.core.errors import DeclutrError
from declutr.evaluation import GROUPS, PROBING_TASKS, classifiers, evaluate, format_table, groups, parse_tasks
from declutr.evaluation.classifiers import L2_GRID, ClassifierSettings
from declutr.evaluation.run import aggregate, aggregate_dev, task_score
from declutr.evaluation.tasks import PROBING_FILES, SentEvalTask
from declutr.evaluation.tasks.retrieval import duplicate_captions
from tests.evaluation.evalhelpers import FAST, Recorder, bag_of_words
from tests.evaluation.senteval_files import PROBING_COUNTS, PROBING_LABELS, SNLI_LABELS, coco_split


def task(name, senteval_dir, **kwargs):
    return SentEvalTask.by_name(name)(str(senteval_dir), **kwargs)


class SplitSpy:
    """Records the arguments SentEval's SplitClassifier is called with."""

    def __init__(self, monkeypatch):
        self.calls = []
        original = classifiers.split

        def spy(x, y, n_classes, settings, seed, l2=L2_GRID):
            self.calls.append({"x": x, "y": y, "n_classes": n_classes, "settings": settings, "seed": seed, "l2": l2})
            return original(x, y, n_classes, settings, seed, l2=l2)

        monkeypatch.setattr(classifiers, "split", spy)


# ----------------------------------------------------------------------------- probing


def test_probing_tasks_read_senteval_files(senteval_dir):
    assert list(PROBING_FILES.values()) == [
        "sentence_length.txt",
        "word_content.txt",
        "tree_depth.txt",
        "top_constituents.txt",
        "bigram_shift.txt",
        "past_present.txt",
        "subj_number.txt",
        "obj_number.txt",
        "odd_man_out.txt",
        "coordination_inversion.txt",
    ]
    for name, filename in PROBING_FILES.items():
        probing = task(name, senteval_dir)
        assert probing.directory() == senteval_dir.parent / "probing"  # SentEval's data/probing beside data/downstream
        texts, y, names = probing.load()
        assert names == sorted(PROBING_LABELS[filename])  # SentEval: sorted(np.unique(train labels))
        assert [len(texts[split]) for split in ("train", "valid", "test")] == list(PROBING_COUNTS.values())
        for split in ("train", "valid", "test"):  # sorted by length, then label
            keys = [(len(text.split()), label) for text, label in zip(texts[split], y[split])]
            assert keys == sorted(keys)
            # the marker word of the label is in the sentence: labels and sentences stay together
            for text, label in zip(texts[split], y[split]):
                assert f"m{names[label].lower().replace('_', '').replace('.', '')}x" in text.split()
    _, _, depth_labels = task("Depth", senteval_dir).load()
    assert depth_labels == ["10", "11", "12", "5", "6", "7", "8", "9"]  # string order, as SentEval's sorted()


def test_probing_run_uses_the_split_classifier_with_dev_selected_l2(senteval_dir, monkeypatch):
    spy = SplitSpy(monkeypatch)
    recorder = Recorder()
    results = evaluate(recorder, "Depth,TopConstituents", senteval_dir, settings=FAST, seed=7)
    for call, classes in zip(spy.calls, (8, 3)):
        assert call["l2"] == L2_GRID and call["settings"] == FAST and call["seed"] == 7 and call["n_classes"] == classes
        assert [len(call["y"][split]) for split in ("train", "valid", "test")] == [96, 24, 24]
    assert not any("(ROOT" in text for text in recorder.texts)  # the sentence is the last field
    for name in ("Depth", "TopConstituents"):
        result = results["tasks"][name]
        assert set(result) == {"devacc", "acc", "ndev", "ntest"} and result["ndev"] == 24 and result["ntest"] == 24
        assert result["acc"] > 70  # the label's marker word is in the sentence


def test_probing_errors_name_file_and_line(tmp_path):
    downstream, probing = tmp_path / "downstream", tmp_path / "probing"
    downstream.mkdir()
    probing.mkdir()
    path = probing / "past_present.txt"
    with pytest.raises(
        DeclutrError,
        match=r"Tense: missing .*past_present.txt \(SentEval's data/probing .*data/probing/past_present.txt\)",
    ):
        evaluate(bag_of_words, "Tense", downstream, settings=FAST)
    path.write_text("tr\tPAST\ta b c\nxx\tPAST\ta b\n", encoding="utf-8")
    with pytest.raises(DeclutrError, match=rf"{path}:2: first field 'xx' is not one of tr, va, te"):
        task("Tense", downstream).load()
    path.write_text("tr\tPAST\ta b c\nva\tPRES\ta b\nte\tPAST\tc\n", encoding="utf-8")
    with pytest.raises(DeclutrError, match=rf"{path}:2: label 'PRES' does not occur in the train split"):
        task("Tense", downstream).load()
    path.write_text("tr\tPAST a b c\n", encoding="utf-8")
    with pytest.raises(DeclutrError, match=rf"{path}:1: expected at least 3 tab-separated fields"):
        task("Tense", downstream).load()
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    (elsewhere / "past_present.txt").write_text("tr\tPAST\ta\nva\tPAST\tb\nte\tPAST\tc\n", encoding="utf-8")
    assert task("Tense", downstream, probing_dir=str(elsewhere)).load()[2] == ["PAST"]


# ----------------------------------------------------------------------------- SNLI


def test_snli_layout_sort_labels_and_features(senteval_dir, monkeypatch):
    snli = task("SNLI", senteval_dir)
    first, second, labels = snli.load("train")
    assert len(first) == len(second) == len(labels) == 120
    keys = [(len(b.split()), len(a.split()), SNLI_LABELS[y]) for a, b, y in zip(first, second, labels)]
    assert keys == sorted(keys)  # SentEval sorts by s2's length, then s1's, then the label text
    assert all(f"{SNLI_LABELS[y]}word" in b.split() for b, y in zip(second, labels))  # label map 0/1/2 as SentEval
    assert snli.classes == {"entailment": 0, "neutral": 1, "contradiction": 2}
    spy = SplitSpy(monkeypatch)
    recorder = Recorder()
    result = evaluate(recorder, "SNLI", senteval_dir, settings=FAST, seed=5)["tasks"]["SNLI"]
    (call,) = spy.calls
    assert call["x"]["train"].shape == (120, 4 * 256)  # [u, v, u*v, |u-v|]
    assert call["l2"] == (1e-9,) and call["seed"] == 5  # SentEval's noreg
    assert call["settings"] == FAST.but(max_epoch=15, epoch_size=1)  # snli.py's fixed classifier epochs
    assert result["features"] == "[u, v, u*v, |u-v|]" and result["ndev"] == 30 and result["ntest"] == 30
    assert result["acc"] > 70
    assert any("déjà" in text for text in recorder.texts)  # latin-1, as SentEval reads s1/s2


def test_snli_trains_up_to_16_passes_as_sentevals_loop(senteval_dir, monkeypatch):
    """snli.py sets max_epoch 15 and epoch_size 1; SentEval's fit loops ``while nepoch <= 15``."""
    passes = []

    class CountingRandomState(np.random.RandomState):
        def permutation(self, x):
            passes.append(x)
            return super().permutation(x)

    original_init = classifiers.LogisticRegression.__init__

    def counting_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.rng = CountingRandomState(self.seed)

    monkeypatch.setattr(classifiers.LogisticRegression, "__init__", counting_init)
    evaluate(bag_of_words, "SNLI", senteval_dir, settings=FAST.but(tenacity=1000))  # no early stop
    assert len(passes) == 16


def test_snli_errors(senteval_dir, tmp_path):
    import shutil

    root = tmp_path / "downstream"
    shutil.copytree(senteval_dir / "SNLI", root / "SNLI")
    labels = root / "SNLI" / "labels.dev"
    labels.write_text(labels.read_text().replace("neutral", "maybe", 1), encoding="utf-8")
    with pytest.raises(DeclutrError, match=rf"SNLI: {labels}:2: unknown label 'maybe'"):
        task("SNLI", root).load("dev")
    (root / "SNLI" / "s1.test").write_text("only one line\n", encoding="latin-1")
    with pytest.raises(DeclutrError, match="must be line-aligned"):
        task("SNLI", root).load("test")
    (root / "SNLI" / "s2.train").unlink()
    with pytest.raises(
        DeclutrError,
        match=r"SNLI: missing .*s2.train \(SentEval's data/downstream/get_transfer_data.bash: SNLI/s2.train\)",
    ):
        evaluate(bag_of_words, "SNLI", root)


# ----------------------------------------------------------------------------- ImageCaptionRetrieval


def _retrieval(captions_of, images=300, dim=32, fold_images=60, seed=0):
    """Train SentEval's ranking model on generated features; ``captions_of(images [N, dim])`` gives
    the caption vectors [5N, dim] (caption c belongs to image c // 5)."""
    rng = np.random.RandomState(seed)
    splits = []
    for _ in range(3):
        image_features = rng.randn(images, dim).astype(np.float32)
        splits.append((image_features, captions_of(image_features, rng)))
    settings = FAST.but(ranking_fold_images=fold_images, ranking_projdim=32, ranking_max_epoch=2, ranking_contrast=10)
    return classifiers.ranking(*splits, settings, 1111)


def test_ranking_recovers_noisy_copies_and_not_shuffled_ones():
    def noisy(images, rng):
        return np.repeat(images, 5, axis=0) + 0.3 * rng.randn(5 * len(images), images.shape[1]).astype(np.float32)

    def shuffled(images, rng):
        return noisy(images, rng)[rng.permutation(5 * len(images))]

    devacc, image_to_text, text_to_image = _retrieval(noisy)
    assert image_to_text[2] > 95 and text_to_image[2] > 95  # R@10
    assert image_to_text[3] <= 2 and text_to_image[3] <= 2  # median rank
    assert image_to_text[0] <= image_to_text[1] <= image_to_text[2]
    assert devacc > 5 * 95  # the six recalls summed
    _, image_to_text, text_to_image = _retrieval(shuffled)
    # chance: R@10 is 16.7% text to image (60 images a fold), ~15.6% image to text (5 of 300 captions)
    assert text_to_image[2] < 30 and image_to_text[2] < 30
    assert text_to_image[3] > 12 and image_to_text[3] > 12


def senteval_ranks(images, captions) -> tuple[np.ndarray, np.ndarray]:
    """SentEval's ``i2t`` and ``t2i`` ranks (``tools/ranking.py``), transcribed loop for loop."""
    import torch

    images, captions = torch.as_tensor(images), torch.as_tensor(captions)
    n = len(images)
    image_ranks = np.zeros(n)
    for index in range(n):
        scores = torch.mm(images[index].view(1, -1), captions.t()).view(-1).numpy()
        inds = np.argsort(scores)[::-1]
        image_ranks[index] = min(np.where(inds == i)[0][0] for i in range(5 * index, 5 * index + 5))
    caption_ranks = np.zeros(5 * n)
    for index in range(n):
        scores = torch.mm(captions[5 * index : 5 * index + 5], images.t()).numpy()
        for i in range(5):
            caption_ranks[5 * index + i] = np.where(np.argsort(scores[i])[::-1] == index)[0][0]
    return image_ranks, caption_ranks


def test_retrieval_ranks_are_sentevals_ties_included():
    # small integer vectors: exact scores whatever the summation order, and many exact ties
    rng = np.random.RandomState(0)
    images = rng.randint(-1, 2, (40, 6)).astype(np.float32)
    captions = rng.randint(-1, 2, (200, 6)).astype(np.float32)
    image_ranks, caption_ranks = classifiers.retrieval_ranks(images, captions)
    expected_images, expected_captions = senteval_ranks(images, captions)
    assert image_ranks.tolist() == expected_images.tolist()
    assert caption_ranks.tolist() == expected_captions.tolist()
    assert classifiers.recalls([0, 0, 4, 9, 20]) == (40.0, 60.0, 80.0, 5.0)  # median rank floor(4) + 1


def test_a_duplicate_caption_is_ranked_behind_its_twin_not_beside_it():
    # images 0 and 1 are the same, and each has one caption equal to it (the other captions point
    # away): each image's top two captions tie exactly, and one of the two must come second
    images = np.asarray([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    captions = np.tile(np.asarray([[0, -1]], dtype=np.float32), (15, 1))
    captions[[0, 5]] = images[0]
    captions[10:] = images[2]
    image_ranks, caption_ranks = classifiers.retrieval_ranks(images, captions)
    assert sorted(image_ranks[:2].tolist()) == [0, 1]  # strict-greater counting gave both rank 0
    assert sorted([caption_ranks[0], caption_ranks[5]]) == [0, 1]
    assert image_ranks[2] == 0


def test_duplicate_captions_are_counted_per_fold():
    captions = ["a", "b", "b", "c", "d"] + ["a", "e", "f", "g", "h"] + ["e", "i", "j", "k", "l"]
    # fold 1 (images 0-1): "a" twice across images; "b" twice within image 0 does not count;
    # fold 2 (image 2) shares "e" with image 1 of fold 1 only, which does not count either
    assert duplicate_captions(captions, fold_images=2) == 2


def test_image_caption_retrieval_reads_coco_pickles(senteval_dir):
    recorder = Recorder()
    result = evaluate(recorder, "ImageCaptionRetrieval", senteval_dir, settings=FAST, seed=3)
    icr = result["tasks"]["ImageCaptionRetrieval"]
    assert icr["ndev"] == 100 and icr["ntest"] == 100  # 20 images x the first 5 captions
    assert icr["test_duplicate_captions"] == 0  # each tiny caption names its image's concept and a number
    assert len(icr["acc"]) == 2 and all(len(direction) == 4 for direction in icr["acc"])
    assert icr["acc"][0][2] > 50  # the captions name the image's concept
    assert all(text.endswith(" .") for text in recorder.texts)  # SentEval appends " ."
    assert not any("number 5" in text for text in recorder.texts)  # only the first 5 captions of an image
    again = evaluate(bag_of_words, "ImageCaptionRetrieval", senteval_dir, settings=FAST, seed=3)
    assert again["tasks"] == result["tasks"]  # deterministic given the seed
    assert "i2t R@1/5/10" in format_table(result)


def test_image_caption_retrieval_needs_five_folds(senteval_dir):
    with pytest.raises(DeclutrError, match=r"valid.pkl has 20 images; SentEval's protocol ranks 5 folds of 1000"):
        evaluate(bag_of_words, "ImageCaptionRetrieval", senteval_dir, settings=FAST.but(ranking_fold_images=1000))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_pickle_holding_anything_else_is_refused(tmp_path):
    coco = tmp_path / "downstream" / "COCO"
    coco.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (coco / f"{split}.pkl").write_bytes(pickle.dumps(coco_split(25, 0), protocol=2))
    icr = task("ImageCaptionRetrieval", tmp_path / "downstream")
    captions, features = icr.load("train.pkl")
    assert features.shape == (25, 8) and len(captions) == 125
    (coco / "train.pkl").write_bytes(pickle.dumps({"features": _Exploit()}))
    with pytest.raises(DeclutrError) as refused:
        icr.load("train.pkl")
    message = str(refused.value)
    assert "\n" not in message and str(coco / "train.pkl") in message
    assert f"refusing to unpickle {os.system.__module__}.system" in message
    (coco / "train.pkl").write_bytes(pickle.dumps({"features": np.zeros(2), "x": pickle.PickleBuffer}))
    with pytest.raises(DeclutrError, match="refusing to unpickle pickle.PickleBuffer"):
        icr.load("train.pkl")
    (coco / "train.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DeclutrError, match="not a readable pickle"):
        icr.load("train.pkl")
    (coco / "train.pkl").write_bytes(pickle.dumps({"features": np.zeros((1, 2))}, protocol=2))
    with pytest.raises(DeclutrError, match="expected a dict with keys features, image_to_caption_ids, captions"):
        icr.load("train.pkl")
    (coco / "valid.pkl").unlink()
    with pytest.raises(
        DeclutrError,
        match=r"ImageCaptionRetrieval: missing .*valid.pkl \(.*get_transfer_data.bash, from "
        r"https://dl.fbaipublicfiles.com/senteval/coco_r101_feat: COCO/valid.pkl\)",
    ):
        evaluate(bag_of_words, "ImageCaptionRetrieval", tmp_path / "downstream")


# ----------------------------------------------------------------------------- groups and aggregates


def test_group_names_expand():
    assert parse_tasks("probing") == list(PROBING_TASKS) and len(PROBING_TASKS) == 10
    assert len(parse_tasks("downstream")) == 18 and parse_tasks("all") == parse_tasks("downstream") + list(
        PROBING_TASKS
    )
    assert parse_tasks("STS12,Probing") == ["STS12", *PROBING_TASKS]
    assert len(GROUPS["downstream (-SNLI)"]) == 17 and "SNLI" not in GROUPS["downstream (-SNLI)"]
    with pytest.raises(DeclutrError, match='did you mean "probing"'):
        parse_tasks("probin")


def test_aggregate_arithmetic_and_coverage():
    results = {
        "STSBenchmark": {"spearman": 0.8, "pearson": 0.7, "devpearson": 0.9},
        "MRPC": {"acc": 70.0, "f1": 80.0, "devacc": 72.0},
        "SNLI": {"acc": 60.0, "devacc": 61.0},
        "ImageCaptionRetrieval": {"devacc": 300.0, "acc": [[10, 20, 30, 5], [40, 50, 60, 3]]},
        "Length": {"acc": 50.0, "devacc": 52.0},
        "Tense": {"acc": 90.0, "devacc": 88.0},
    }
    assert task_score("ImageCaptionRetrieval", results["ImageCaptionRetrieval"]) == (35.0, 50.0)
    test, dev = aggregate(results), aggregate_dev(results)
    assert (test["STSBenchmark"], dev["STSBenchmark"]) == (80.0, 90.0) and (test["MRPC"], dev["MRPC"]) == (75.0, 72.0)
    assert test["downstream"] == round((80 + 75 + 60 + 35) / 4, 2) and dev["downstream"] == round(
        (90 + 72 + 61 + 50) / 4, 2
    )
    assert (
        test["downstream (-SNLI)"] == round((80 + 75 + 35) / 3, 2)
        and test["probing"] == 70.0
        and dev["probing"] == 70.0
    )
    summary = groups(results)
    assert summary["downstream"]["coverage"] == "4 of 18 tasks" and summary["downstream"]["tasks_run"] == 4
    assert (
        summary["downstream (-SNLI)"]["coverage"] == "3 of 17 tasks"
        and summary["probing"]["coverage"] == "2 of 10 tasks"
    )
    assert "Depth" in summary["probing"]["missing"] and "SNLI" not in summary["downstream (-SNLI)"]["missing"]
    assert groups({"Tense": results["Tense"]}).keys() == {"probing"}  # a group with no task run is absent


def test_group_means_average_unrounded_task_scores():
    results = {task: {"acc": acc, "devacc": acc} for task, acc in (("MR", 10.0044), ("CR", 10.0044), ("SUBJ", 10.0075))}
    test = aggregate(results)
    assert (test["MR"], test["SUBJ"]) == (10.0, 10.01)  # each task's figure is rounded for output
    # mean of 10.0044, 10.0044, 10.0075 = 10.00543; rounding each first gave mean(10.0, 10.0, 10.01) = 10.0
    assert test["downstream"] == 10.01 and aggregate_dev(results)["downstream (-SNLI)"] == 10.01


def test_protocol_names_the_settings_that_ran(senteval_dir):
    def label(**kwargs):
        return evaluate(bag_of_words, "STS12", senteval_dir, **kwargs)["protocol"]

    assert label()["senteval"] == "paper" and label(prototyping=True)["senteval"] == "prototyping"
    assert label(settings=ClassifierSettings.prototyping())["senteval"] == "prototyping"  # was "paper"
    assert label(settings=ClassifierSettings.paper().but(ranking_device="cpu"))["senteval"] == "paper"
    custom = label(settings=FAST, prototyping=True)
    assert custom["senteval"] == "custom" and "changed_from_paper" not in label()
    assert custom["changed_from_paper"]["kfold"] == 3 and custom["changed_from_paper"]["optim"] == "rmsprop"
    assert "max_epoch" in custom["changed_from_paper"] and "ranking_device" not in custom["changed_from_paper"]
    assert format_table({"tasks": {}, "aggregate": {}, "protocol": custom}).startswith("protocol: SentEval (custom,")


def test_device_reaches_the_ranking_model(senteval_dir, monkeypatch):
    import torch

    seen = []
    original = classifiers.ranking

    def spy(train, dev, test, settings, seed):
        seen.append(settings.ranking_device)
        return original(train, dev, test, settings, seed)

    monkeypatch.setattr(classifiers, "ranking", spy)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # left to itself the ranker would pick CUDA
    result = evaluate(bag_of_words, "ImageCaptionRetrieval", senteval_dir, settings=FAST, device="cpu")
    assert seen == ["cpu"] and result["protocol"]["senteval"] == "custom"


def test_every_task_of_the_paper_runs(all_results):
    summary = all_results["groups"]
    assert {group: summary[group]["coverage"] for group in summary} == {
        "downstream": "18 of 18 tasks",
        "downstream (-SNLI)": "17 of 17 tasks",
        "probing": "10 of 10 tasks",
    }
    assert all(not summary[group]["missing"] for group in summary)
    scores = all_results["aggregate"]
    assert scores["probing"] == pytest.approx(np.mean([scores[name] for name in PROBING_TASKS]), abs=0.01)
    table = format_table(all_results)
    assert "downstream (-SNLI)" in table and "mean of 17 of 17 tasks" in table and "partial" not in table
