from __future__ import annotations

import numpy as np
import pytest
import torch

from declutr.core.errors import DeclutrError
from declutr.evaluation import classifiers
from declutr.evaluation.classifiers import (
    L2_GRID,
    ClassifierSettings,
    LogisticRegression,
)

FAST = ClassifierSettings.prototyping().but(max_epoch=10, kfold=3)


def separable(n=300, d=20, classes=3, seed=0, noise=0.5):
    rng = np.random.RandomState(seed)
    centers = rng.randn(classes, d) * 2
    y = np.arange(n) % classes
    return (centers[y] + noise * rng.randn(n, d)).astype(np.float32), y


def test_stratified_folds_partition_and_stratify():
    y = np.array([0] * 30 + [1] * 20 + [2] * 10)
    folds = classifiers.stratified_kfold(y, 5, 1111)
    tests = np.concatenate([test for _, test in folds])
    assert sorted(tests.tolist()) == list(range(60))
    for train, test in folds:
        assert set(train).isdisjoint(test) and len(train) + len(test) == 60
        assert np.bincount(y[test]).tolist() == [6, 4, 2]
    assert [t.tolist() for _, t in folds] == [t.tolist() for _, t in classifiers.stratified_kfold(y, 5, 1111)]
    assert [t.tolist() for _, t in folds] != [t.tolist() for _, t in classifiers.stratified_kfold(y, 5, 7)]


def test_stratified_folds_equal_scikit_learn():
    model_selection = pytest.importorskip("sklearn.model_selection")
    rng = np.random.RandomState(1)
    for trial in range(10):
        y = rng.choice(["pos", "neg", "mid"], size=rng.randint(30, 200))
        for k in (2, 5, 10):
            reference = model_selection.StratifiedKFold(n_splits=k, shuffle=True, random_state=trial).split(
                np.zeros(len(y)), y
            )
            for (train, test), (ref_train, ref_test) in zip(classifiers.stratified_kfold(y, k, trial), reference):
                assert np.array_equal(train, ref_train) and np.array_equal(test, ref_test)


def test_stratified_folds_reject_impossible_splits():
    with pytest.raises(DeclutrError):
        classifiers.stratified_kfold([0, 1, 0], 5, 0)


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_optimizer_matches_torch(name):
    generator = torch.Generator().manual_seed(0)
    mine = torch.randn(7, 3, generator=generator)
    reference = torch.nn.Parameter(mine.clone())
    optimizer = classifiers._Optimizer(name, mine)
    torch_optimizer = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}[name]([reference])
    for _ in range(5):
        grad = torch.randn(7, 3, generator=generator)
        optimizer.step(grad)
        reference.grad = grad.clone()
        torch_optimizer.step()
    torch.testing.assert_close(mine, reference.detach(), rtol=1e-5, atol=1e-6)


def test_linear_init_matches_nn_linear():
    torch.manual_seed(1111)
    layer = torch.nn.Linear(10, 4)
    weight, bias = classifiers._linear_init(10, 4, 1111)
    torch.testing.assert_close(weight, layer.weight.detach())
    torch.testing.assert_close(bias, layer.bias.detach())


def test_batched_l2_values_equal_separate_fits():
    x, y = separable(noise=2.0)
    together = LogisticRegression(x.shape[1], 3, L2_GRID, FAST, seed=3)
    best = together.fit(x[:200], y[:200], dev=(x[200:], y[200:]))
    for r, l2 in enumerate(L2_GRID):
        alone = LogisticRegression(x.shape[1], 3, (l2,), FAST, seed=3)
        assert alone.fit(x[:200], y[:200], dev=(x[200:], y[200:]))[0] == pytest.approx(best[r])
        assert np.array_equal(alone.predict(x), together.predict(x, which=r))


def test_logistic_regression_learns_and_is_deterministic():
    x, y = separable()
    first = LogisticRegression(x.shape[1], 3, (1e-4,), FAST, seed=5)
    assert first.fit(x, y, validation_split=0.2)[0] > 0.9
    assert first.score(x, y) > 0.9
    second = LogisticRegression(x.shape[1], 3, (1e-4,), FAST, seed=5)
    second.fit(x, y, validation_split=0.2)
    assert torch.equal(first.weight, second.weight)


def test_validation_schemes_score_percentages():
    x, y = separable(n=240, classes=2)
    devacc, acc = classifiers.inner_kfold(x, y, 2, FAST, 1111)
    assert 90 <= devacc <= 100 and 90 <= acc <= 100
    devacc, acc, predictions = classifiers.kfold(x[:180], y[:180], x[180:], y[180:], 2, FAST, 1111)
    assert acc == round(100 * np.mean(predictions == y[180:]), 2) and acc > 90
    split = {"train": x[:150], "valid": x[150:200], "test": x[200:]}
    labels = {"train": y[:150], "valid": y[150:200], "test": y[200:]}
    devacc, acc = classifiers.split(split, labels, 2, FAST, 1111)
    assert devacc > 90 and acc > 90


def test_f1_binary():
    assert classifiers.f1_binary([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert classifiers.f1_binary([0, 0], [0, 0]) == 0.0
    assert classifiers.f1_binary([1, 0, 1], [1, 0, 1]) == 1.0


def test_encode_scores_is_senteval_encoding():
    encoded = classifiers.encode_scores([1.0, 2.4, 5.0, 0.5])
    np.testing.assert_allclose(encoded[0], [1, 0, 0, 0, 0])
    np.testing.assert_allclose(encoded[1], [0, 0.6, 0.4, 0, 0], atol=1e-6)
    np.testing.assert_allclose(encoded[2], [0, 0, 0, 0, 1])
    np.testing.assert_allclose(encoded[3], [0.5, 0, 0, 0, 0])  # SentEval drops the mass below 1
    np.testing.assert_allclose(encoded[1] @ np.arange(1, 6), 2.4, atol=1e-6)


def test_relatedness_regressor_learns_a_score():
    rng = np.random.RandomState(0)
    x = rng.randn(400, 16).astype(np.float32)
    score = 1 + 4 / (1 + np.exp(-(x[:, 0] + 0.5 * x[:, 1])))
    settings = ClassifierSettings().but(regressor_max_epoch=250)
    dev_pearson, predicted = classifiers.relatedness(
        x[:250], score[:250], x[250:320], score[250:320], x[320:], settings, 1111
    )
    assert dev_pearson > 0.85
    assert np.corrcoef(predicted, score[320:])[0, 1] > 0.85
    again = classifiers.relatedness(x[:250], score[:250], x[250:320], score[250:320], x[320:], settings, 1111)[1]
    assert np.array_equal(predicted, again)
