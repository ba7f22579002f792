from __future__ import annotations

import json

import numpy as np
import pytest

from declutr.core.errors import DeclutrError
from declutr.evaluation import (
    DOWNSTREAM_TASKS,
    PROBING_TASKS,
    aggregate,
    evaluate,
    format_table,
    parse_tasks,
    select_tasks,
)
from declutr.evaluation.tasks import SentEvalTask
from tests.evaluation.evalhelpers import FAST, Recorder, bag_of_words


def test_every_downstream_task_runs_with_senteval_fields(all_results):
    tasks = all_results["tasks"]
    assert list(tasks) == [*DOWNSTREAM_TASKS, *PROBING_TASKS]  # --tasks all
    for name in ("STS12", "STS13", "STS14", "STS15", "STS16"):
        assert set(tasks[name]["all"]) == {"pearson", "spearman"}
        assert set(tasks[name]["all"]["spearman"]) == {"mean", "wmean"}
        assert tasks[name]["all"]["spearman"]["mean"] > 0.8  # shared key words track the gold score
    for name in ("STSBenchmark", "SICKRelatedness"):
        result = tasks[name]
        assert {"pearson", "spearman", "mse", "devpearson", "ndev", "ntest", "cosine"} <= set(result)
        assert result["cosine"]["spearman"] > 0.8
        assert -1 <= result["spearman"] <= 1
    for name in ("MR", "CR", "SUBJ", "MPQA", "SST2", "SST5", "TREC", "MRPC", "SICKEntailment"):
        result = tasks[name]
        assert {"acc", "devacc", "ndev", "ntest"} <= set(result)
        assert result["acc"] > 70, (name, result)  # the label is carried by a marker word
    assert tasks["MRPC"]["f1"] > 70 and tasks["MRPC"]["ntest"] == 40 and tasks["MRPC"]["ndev"] == 80
    assert (
        tasks["MR"]["ntest"] == 80
        and tasks["SST5"]["ntest"] == 40
        and tasks["TREC"]["ntest"] == 36
        and tasks["TREC"]["ndev"] == 300
    )
    assert tasks["SICKEntailment"]["ndev"] == 60 and tasks["SICKEntailment"]["ntest"] == 90


def test_unscored_sts_pairs_are_skipped(all_results):
    # 30 pairs per sub-dataset, every tenth without a gold score
    assert all_results["tasks"]["STS12"]["MSRpar"]["nsamples"] == 27
    weights = [all_results["tasks"]["STS14"][d]["nsamples"] for d in ("deft-forum", "images")]
    assert weights == [27, 27]


def test_aggregate_is_declutrs(all_results):
    tasks, scores = all_results["tasks"], all_results["aggregate"]
    assert scores["STS12"] == round(100 * tasks["STS12"]["all"]["spearman"]["mean"], 2)
    assert scores["STSBenchmark"] == round(100 * tasks["STSBenchmark"]["spearman"], 2)
    assert scores["MRPC"] == round((tasks["MRPC"]["acc"] + tasks["MRPC"]["f1"]) / 2, 2)
    assert scores["TREC"] == tasks["TREC"]["acc"]
    per_task = [scores[name] for name in DOWNSTREAM_TASKS]
    assert scores["downstream"] == pytest.approx(np.mean(per_task), abs=0.01)
    assert aggregate({}) == {}
    json.dumps(all_results)  # JSON-serialisable


def test_results_are_deterministic(senteval_dir):
    first = evaluate(bag_of_words, "MR,TREC,STSBenchmark,SICKEntailment", senteval_dir, settings=FAST, seed=3)
    second = evaluate(bag_of_words, "MR,TREC,STSBenchmark,SICKEntailment", senteval_dir, settings=FAST, seed=3)
    assert first == second
    table = format_table(first)
    assert "downstream" in table and "cosine spearman" in table


def test_files_are_read_with_their_encodings(senteval_dir):
    recorder = Recorder()
    evaluate(recorder, "MR,TREC,MRPC", senteval_dir, settings=FAST)
    assert any("café" in text for text in recorder.texts)  # latin-1 MR
    assert any("naïve" in text for text in recorder.texts)  # latin-1 TREC, "COARSE:fine" prefix removed
    assert not any(text.startswith(("ABBR:", "fine ")) for text in recorder.texts)
    assert not any(
        "\ufeff" in text or "\r" in text or "#1 String" in text for text in recorder.texts
    )  # MRPC BOM/CRLF/header


def test_untokenized_reads_original_files(senteval_dir, tmp_path):
    import shutil

    copy = shutil.copytree(senteval_dir / "STS", tmp_path / "STS")
    path = copy / "STSBenchmark" / "original" / "sts-test.csv"
    path.write_text(path.read_text(encoding="utf-8").replace("\tkey", "\tORIGINALkey"), encoding="utf-8")
    recorder = Recorder()
    task = SentEvalTask.by_name("STSBenchmark")(str(tmp_path), untokenized=True)
    task.cosine(recorder)
    assert any(text.startswith("ORIGINALkey") for text in recorder.texts)
    plain = Recorder()
    SentEvalTask.by_name("STSBenchmark")(str(tmp_path)).cosine(plain)
    assert not any("ORIGINAL" in text for text in plain.texts)


def test_pair_features_choice(senteval_dir):
    dims = {}

    def recording(texts):
        return bag_of_words(texts, 16)

    from declutr.evaluation import classifiers

    original = classifiers.kfold

    def spy(train_x, *args, **kwargs):
        dims.setdefault("features", train_x.shape[1])
        return original(train_x, *args, **kwargs)

    classifiers.kfold = spy
    try:
        # the default is SentEval's [|u-v|, u*v]; the JSON protocol says so
        result = evaluate(recording, "MRPC", senteval_dir, settings=FAST)
        assert dims["features"] == 32 and result["tasks"]["MRPC"]["features"] == "[|u-v|, u*v]"
        assert result["protocol"]["pair_features"] == "[|u-v|, u*v]"
        dims.clear()
        result = evaluate(recording, "MRPC", senteval_dir, settings=FAST, pair_features="full")
        assert dims["features"] == 64 and result["tasks"]["MRPC"]["features"] == "[u, v, |u-v|, u*v]"
        assert result["protocol"]["pair_features"] == "[u, v, |u-v|, u*v]"
    finally:
        classifiers.kfold = original


def test_user_errors(senteval_dir, tmp_path):
    with pytest.raises(DeclutrError, match='did you mean "STS16"'):
        parse_tasks("STS1")
    assert parse_tasks("sts12, mr") == ["STS12", "MR"]
    with pytest.raises(DeclutrError, match="does not exist"):
        evaluate(bag_of_words, "MR", tmp_path / "nowhere")
    with pytest.raises(DeclutrError, match="custrev.pos"):
        evaluate(bag_of_words, "CR", tmp_path)
    with pytest.raises(DeclutrError, match="pair features"):
        evaluate(bag_of_words, "MRPC", senteval_dir, pair_features="concat")
    broken = tmp_path / "SST" / "fine"
    broken.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (broken / f"sentiment-{split}").write_text("7 a sentence\n", encoding="utf-8")
    with pytest.raises(DeclutrError, match="label 7 outside"):
        evaluate(bag_of_words, "SST5", tmp_path, settings=FAST)


def test_evaluate_runs_the_tasks_select_tasks_built(senteval_dir):
    built = select_tasks("STS12,MRPC", senteval_dir, pair_features="full")
    assert [task.name for task in built] == ["STS12", "MRPC"]
    result = evaluate(bag_of_words, built, settings=FAST, seed=3)
    assert result == evaluate(bag_of_words, "STS12,MRPC", senteval_dir, settings=FAST, seed=3, pair_features="full")
    assert result["protocol"]["pair_features"] == "[u, v, |u-v|, u*v]"
    with pytest.raises(DeclutrError, match="evaluate needs data_dir"):
        evaluate(bag_of_words, "STS12")
    mixed = [*built, *select_tasks("MRPC", senteval_dir)]
    with pytest.raises(DeclutrError, match="the tasks differ in pair_features"):
        evaluate(bag_of_words, mixed, settings=FAST)
