"""SentEval's classifiers on frozen embeddings, re-implemented in torch + numpy (no scikit-learn).

What SentEval does, and what this module reproduces:
- a logistic regression (``nn.Linear`` + cross-entropy) trained with Adam (RMSprop under
  prototyping), in "epochs" of ``epoch_size`` passes over shuffled data, scored on a dev set
  after each, keeping the best model and stopping after ``tenacity`` epochs without gain;
- L2 regularisation chosen from ``1e-5, 1e-4, 1e-3, 1e-2`` by inner k-fold cross-validation
  (MR, CR, SUBJ, MPQA), k-fold cross-validation on train (TREC, MRPC) or the dev set (SST,
  SICK-E); folds are scikit-learn's ``StratifiedKFold(shuffle=True)`` rebuilt exactly;
- the relatedness regressor of STS-B and SICK-R: softmax over 5 score bins trained with MSE
  against Tai et al.'s sparse score encoding, early-stopped on dev Pearson;
- ImageCaptionRetrieval's ranking model (``tools/ranking.py``): image and caption vectors
  projected onto a shared unit sphere, a margin loss over sampled contrastive pairs, recall@K
  and median rank in both directions over folds of 1000 images.

Every classifier SentEval builds re-seeds numpy and torch with the same seed, so the models
for the four L2 values see identical initial weights and identical batches. That lets one run
train the four at once as a ``[R, D, C]`` weight tensor (same result, a quarter of the work).
Gradients are written out by hand (softmax regression needs no autograd). One deliberate
difference: SentEval's ``loss_fn.size_average = False`` has had no effect since torch 0.4, so
its losses are batch means; so are these.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from declutr.core.errors import DeclutrError

#: SentEval's L2 grid for its pytorch classifiers
L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2)


@dataclass(frozen=True)
class ClassifierSettings:
    """SentEval's ``params["classifier"]`` plus ``kfold`` (logistic regression only, ``nhid=0``)."""

    optim: str = "adam"
    batch_size: int = 64
    tenacity: int = 5
    epoch_size: int = 4
    max_epoch: int = 200
    kfold: int = 10
    #: relatedness regressor (SentEval fixes these): epochs per dev check, patience, epoch cap
    regressor_epochs_per_check: int = 50
    regressor_patience: int = 3
    regressor_max_epoch: int = 1000
    #: ImageCaptionRetrieval's ranking model (SentEval fixes these): projection size, margin,
    #: batch, contrastive samples per pair, epoch cap and patience, images per ranking fold, and
    #: its device (None: CUDA when available, as SentEval, which needs CUDA)
    ranking_projdim: int = 1000
    ranking_margin: float = 0.2
    ranking_batch_size: int = 128
    ranking_contrast: int = 30
    ranking_max_epoch: int = 20
    ranking_patience: int = 3
    ranking_fold_images: int = 1000
    ranking_device: str | None = None

    @classmethod
    def paper(cls) -> ClassifierSettings:
        """The settings DeCLUTR reports (SentEval's defaults for final results)."""
        return cls()

    @classmethod
    def prototyping(cls) -> ClassifierSettings:
        """SentEval's faster settings "for prototyping"."""
        return cls(optim="rmsprop", batch_size=128, tenacity=3, epoch_size=2, kfold=5)

    def but(self, **changes) -> ClassifierSettings:
        return replace(self, **changes)

    def preset(self) -> str:
        """``"paper"`` or ``"prototyping"`` when these are exactly that preset's settings (the
        ranking device aside: it changes where, not what, SentEval computes), else ``"custom"``."""
        device_free = replace(self, ranking_device=None)
        for name in ("paper", "prototyping"):
            if device_free == getattr(type(self), name)():
                return name
        return "custom"

    def describe(self) -> dict:
        """The settings a result records; custom settings also list every field that differs
        from the paper's."""
        described = {
            "classifier": "logistic regression (torch)",
            "optim": self.optim,
            "batch_size": self.batch_size,
            "tenacity": self.tenacity,
            "epoch_size": self.epoch_size,
            "max_epoch": self.max_epoch,
            "kfold": self.kfold,
        }
        if self.preset() == "custom":
            paper = self.paper()
            described["changed_from_paper"] = {
                field.name: getattr(self, field.name)
                for field in fields(self)
                if field.name != "ranking_device" and getattr(self, field.name) != getattr(paper, field.name)
            }
        return described


def stratified_kfold(labels, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train_index, test_index)`` per fold, as scikit-learn's
    ``StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(X, labels)``."""
    labels = np.asarray(labels)
    if k < 2 or k > len(labels):
        raise DeclutrError(f"cannot split {len(labels)} examples into {k} folds")
    _, first_seen, inverse = np.unique(labels, return_index=True, return_inverse=True)
    _, appearance_order = np.unique(first_seen, return_inverse=True)
    encoded = appearance_order[inverse.reshape(-1)]
    n_classes = len(first_seen)
    if np.all(k > np.bincount(encoded)):
        raise DeclutrError(f"cannot split into {k} folds: every class has fewer than {k} examples")
    # round-robin allocation of each class over folds, then a seeded shuffle per class
    ordered = np.sort(encoded)
    allocation = np.asarray([np.bincount(ordered[i::k], minlength=n_classes) for i in range(k)])
    rng = np.random.RandomState(seed)
    test_fold = np.empty(len(labels), dtype=np.int64)
    for label in range(n_classes):
        folds = np.arange(k).repeat(allocation[:, label])
        rng.shuffle(folds)
        test_fold[encoded == label] = folds
    return [(np.flatnonzero(test_fold != i), np.flatnonzero(test_fold == i)) for i in range(k)]


def _linear_init(in_features: int, out_features: int, seed: int, generator=None):
    """``nn.Linear``'s initial weight [out, in] and bias after ``torch.manual_seed(seed)`` (or the
    next ones drawn from ``generator``)."""
    import torch

    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    bound = 1.0 / in_features**0.5
    weight = torch.empty(out_features, in_features).uniform_(-bound, bound, generator=generator)
    bias = torch.empty(out_features).uniform_(-bound, bound, generator=generator)
    return weight, bias


class _Optimizer:
    """Adam, RMSprop or SGD with torch's default hyper-parameters, updating one tensor in place.

    Written out (rather than ``torch.optim``) because the tensors here are tiny and per-call
    overhead dominates; ``tests/evaluation`` checks the updates equal ``torch.optim``'s."""

    def __init__(self, name: str, parameter):
        import torch

        self.name, self.parameter, self.steps = name, parameter, 0
        if name == "adam":
            self.lr, self.first, self.second = 1e-3, torch.zeros_like(parameter), torch.zeros_like(parameter)
        elif name == "rmsprop":
            self.lr, self.second = 1e-2, torch.zeros_like(parameter)
        elif name.startswith("sgd"):
            self.lr = float(name.partition("lr=")[2] or 0.1)
        else:
            raise DeclutrError(f'unknown classifier optimizer "{name}"; use adam, rmsprop or sgd,lr=X')

    def step(self, grad) -> None:
        self.steps += 1
        if self.name == "adam":  # betas (0.9, 0.999), eps 1e-8
            self.first.lerp_(grad, 0.1)
            self.second.mul_(0.999).addcmul_(grad, grad, value=0.001)
            denominator = self.second.sqrt().div_((1 - 0.999**self.steps) ** 0.5).add_(1e-8)
            self.parameter.addcdiv_(self.first, denominator, value=-self.lr / (1 - 0.9**self.steps))
        elif self.name == "rmsprop":  # alpha 0.99, eps 1e-8
            self.second.mul_(0.99).addcmul_(grad, grad, value=0.01)
            self.parameter.addcdiv_(grad, self.second.sqrt().add_(1e-8), value=-self.lr)
        else:
            self.parameter.add_(grad, alpha=-self.lr)


def _with_bias_column(x):
    import torch

    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    return torch.cat([x, torch.ones(len(x), 1)], dim=1)


class LogisticRegression:
    """Softmax regression for several L2 strengths at once, trained as SentEval's ``MLP(nhid=0)``.

    The weights of all L2 values live in one ``[D + 1, R * C]`` matrix (last row: the biases,
    which torch's ``weight_decay`` also decays); after :meth:`fit`, column block ``r`` holds the
    best model (by dev accuracy) for ``l2[r]``.
    """

    def __init__(
        self, in_features: int, n_classes: int, l2=(0.0,), settings: ClassifierSettings | None = None, seed: int = 1111
    ):
        import torch

        self.settings = settings or ClassifierSettings()
        self.n_classes, self.seed, self.l2 = n_classes, seed, tuple(float(v) for v in l2)
        weight, bias = _linear_init(in_features, n_classes, seed)
        single = torch.cat([weight.t(), bias[None, :]], dim=0)  # [D + 1, C]
        self.weight = single.repeat(1, len(self.l2))  # [D + 1, R * C]
        self.rng = np.random.RandomState(seed)  # SentEval's np.random.seed(seed)

    def fit(self, x, y, dev=None, validation_split: float | None = None) -> np.ndarray:
        """Train; validate on ``dev=(x, y)`` or on a random ``validation_split`` of ``x``.

        Returns the best dev accuracy per L2 value (in [0, 1])."""
        import torch

        x, y = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)
        if dev is None:
            if not validation_split:
                raise ValueError("fit needs dev data or a validation_split")
            permutation = self.rng.permutation(len(x))
            cut = int(validation_split * len(x))
            dev = (x[permutation[:cut]], y[permutation[:cut]])
            x, y = x[permutation[cut:]], y[permutation[cut:]]
        train_x, dev_x = _with_bias_column(x), _with_bias_column(dev[0])
        dev_y = torch.as_tensor(np.asarray(dev[1], dtype=np.int64))
        onehot = torch.nn.functional.one_hot(torch.from_numpy(y), self.n_classes).float()

        s, repeats, classes = self.settings, len(self.l2), self.n_classes
        weight = self.weight.clone()
        decay = torch.tensor(self.l2, dtype=torch.float32).repeat_interleave(classes)  # per column
        optimizer = _Optimizer(s.optim, weight)
        best = np.full(repeats, -1.0)
        best_weight = weight.clone()
        active = np.ones(repeats, dtype=bool)
        waited = np.zeros(repeats, dtype=np.int64)
        epoch = 0
        while active.any() and epoch <= s.max_epoch:
            for _ in range(s.epoch_size):
                permutation = self.rng.permutation(len(train_x))
                for start in range(0, len(train_x), s.batch_size):
                    index = torch.from_numpy(permutation[start : start + s.batch_size])
                    batch_x = train_x.index_select(0, index)
                    probs = torch.softmax((batch_x @ weight).view(len(index), repeats, classes), dim=-1)
                    residual = (probs - onehot.index_select(0, index)[:, None, :]).view(len(index), -1)
                    # d(mean cross-entropy)/d(weight) + L2 term
                    optimizer.step(torch.addmm(weight * decay, batch_x.t(), residual, alpha=1.0 / len(index)))
            epoch += s.epoch_size
            accuracy = self._accuracy(weight, dev_x, dev_y)
            for r in np.flatnonzero(active):
                if accuracy[r] > best[r]:
                    best[r] = accuracy[r]
                    best_weight[:, r * classes : (r + 1) * classes] = weight[:, r * classes : (r + 1) * classes]
                else:
                    if waited[r] >= s.tenacity:
                        active[r] = False
                    waited[r] += 1
        self.weight = best_weight
        return best

    def _accuracy(self, weight, x, y) -> np.ndarray:
        predictions = (x @ weight).view(len(x), len(self.l2), self.n_classes).argmax(-1)  # [N, R]
        return (predictions == y[:, None]).float().mean(0).numpy().astype(np.float64)

    def predict(self, x, which: int = 0) -> np.ndarray:
        columns = self.weight[:, which * self.n_classes : (which + 1) * self.n_classes]
        return (_with_bias_column(x) @ columns).argmax(-1).numpy()

    def score(self, x, y, which: int = 0) -> float:
        return float(np.mean(self.predict(x, which) == np.asarray(y)))


def _percent(value) -> float:
    return round(100 * float(value), 2)


def inner_kfold(x, y, n_classes: int, settings: ClassifierSettings, seed: int) -> tuple[float, float]:
    """SentEval's ``InnerKFoldClassifier`` (MR, CR, SUBJ, MPQA): ``(devacc, acc)`` in percent.

    Outer k folds; in each, L2 is chosen by an inner k-fold on the outer training part, then a
    model with that L2 is trained on it (5% held out for early stopping) and scored on the fold.
    Fold seeds are SentEval's fixed 1111, not the task seed."""
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y)
    dev_scores, test_scores = [], []
    for train_index, test_index in stratified_kfold(y, settings.kfold, 1111):
        x_train, y_train = x[train_index], y[train_index]
        per_fold = []
        for inner_train, inner_test in stratified_kfold(y_train, settings.kfold, 1111):
            model = LogisticRegression(x.shape[1], n_classes, L2_GRID, settings, seed)
            per_fold.append(
                model.fit(x_train[inner_train], y_train[inner_train], dev=(x_train[inner_test], y_train[inner_test]))
            )
        scores = [round(100 * float(np.mean(column)), 2) for column in np.asarray(per_fold).T]
        chosen = L2_GRID[int(np.argmax(scores))]
        dev_scores.append(max(scores))
        model = LogisticRegression(x.shape[1], n_classes, (chosen,), settings, seed)
        model.fit(x_train, y_train, validation_split=0.05)
        test_scores.append(_percent(model.score(x[test_index], y[test_index])))
    return round(float(np.mean(dev_scores)), 2), round(float(np.mean(test_scores)), 2)


def kfold(train_x, train_y, test_x, test_y, n_classes: int, settings: ClassifierSettings, seed: int):
    """SentEval's ``KFoldClassifier`` (TREC, MRPC): L2 by k-fold cross-validation on train, then a
    model trained on all of train (5% held out for early stopping). ``(devacc, acc, predictions)``."""
    train_x, train_y = np.asarray(train_x, dtype=np.float32), np.asarray(train_y)
    per_fold = []
    for train_index, test_index in stratified_kfold(train_y, settings.kfold, seed):
        model = LogisticRegression(train_x.shape[1], n_classes, L2_GRID, settings, seed)
        per_fold.append(
            model.fit(train_x[train_index], train_y[train_index], dev=(train_x[test_index], train_y[test_index]))
        )
    scores = [round(100 * float(np.mean(column)), 2) for column in np.asarray(per_fold).T]
    chosen = L2_GRID[int(np.argmax(scores))]
    model = LogisticRegression(train_x.shape[1], n_classes, (chosen,), settings, seed)
    model.fit(train_x, train_y, validation_split=0.05)
    predictions = model.predict(test_x)
    return max(scores), _percent(np.mean(predictions == np.asarray(test_y))), predictions


def split(x: dict, y: dict, n_classes: int, settings: ClassifierSettings, seed: int, l2=L2_GRID) -> tuple[float, float]:
    """SentEval's ``SplitClassifier`` (SST-2, SST-5, SICK-E, SNLI, probing): L2 chosen on the dev
    set from ``l2`` (SNLI's ``noreg``: ``(1e-9,)``). ``x``/``y`` have keys ``train``, ``valid``,
    ``test``. ``(devacc, acc)`` in percent."""
    model = LogisticRegression(np.asarray(x["train"]).shape[1], n_classes, l2, settings, seed)
    best = model.fit(x["train"], y["train"], dev=(x["valid"], y["valid"]))
    scores = [_percent(value) for value in best]
    chosen = int(np.argmax(scores))
    # SentEval retrains the chosen L2 from the same seed on the same data: the same model
    return max(scores), _percent(model.score(x["test"], y["test"], which=chosen))


def f1_binary(truth, predictions) -> float:
    """F1 of the positive class (label 1), as ``sklearn.metrics.f1_score``."""
    truth, predictions = np.asarray(truth).astype(int).reshape(-1), np.asarray(predictions).astype(int).reshape(-1)
    true_positive = int(np.sum((truth == 1) & (predictions == 1)))
    predicted, actual = int(np.sum(predictions == 1)), int(np.sum(truth == 1))
    if predicted + actual == 0:
        return 0.0
    return 2 * true_positive / (predicted + actual)


def encode_scores(scores, n_bins: int = 5) -> np.ndarray:
    """Tai, Socher & Manning's sparse target over bins 1..n_bins (SentEval's ``encode_labels``).

    A score in [1, 5] spreads over its two neighbouring bins; SentEval uses the same encoding for
    STS-B's [0, 5] scores, where a score below 1 keeps only its mass on bin 1."""
    scores = np.asarray(scores, dtype=np.float64)
    target = np.zeros((len(scores), n_bins), dtype=np.float32)
    floor = np.floor(scores)
    for row, (score, low) in enumerate(zip(scores, floor)):
        for i in range(n_bins):
            if i + 1 == low + 1:
                target[row, i] = score - low
            if i + 1 == low:
                target[row, i] = low - score + 1
    return target


def relatedness(train_x, train_scores, dev_x, dev_scores, test_x, settings: ClassifierSettings, seed: int):
    """SentEval's ``RelatednessPytorch`` (STS-B, SICK-R): returns ``(best dev Pearson, test predictions)``.

    A softmax over 5 bins trained with MSE against :func:`encode_scores` (Adam, batch 64), in
    rounds of 50 epochs, early-stopped on the dev Pearson of the expected score."""
    import torch
    from scipy.stats import pearsonr

    n_bins = 5
    train_x, dev_x, test_x = _with_bias_column(train_x), _with_bias_column(dev_x), _with_bias_column(test_x)
    target = torch.from_numpy(encode_scores(train_scores, n_bins))
    dev_scores = np.asarray(dev_scores, dtype=np.float64)
    bins = torch.arange(1, n_bins + 1, dtype=torch.float32)

    rng = np.random.RandomState(seed)
    weight, bias = _linear_init(train_x.shape[1] - 1, n_bins, seed)
    weight = torch.cat([weight.t(), bias[None, :]], dim=0)  # [D + 1, bins], bias last
    optimizer = _Optimizer("adam", weight)
    batch_size = 64

    def expected(x, weight):
        return (torch.softmax(x @ weight, dim=-1) @ bins).numpy().astype(np.float64)

    best, best_weight, waited, epoch = -1.0, weight.clone(), 0, 0
    while epoch <= settings.regressor_max_epoch:
        for _ in range(settings.regressor_epochs_per_check):
            permutation = rng.permutation(len(train_x))
            for start in range(0, len(train_x), batch_size):
                index = torch.from_numpy(permutation[start : start + batch_size])
                batch_x = train_x.index_select(0, index)
                probs = torch.softmax(batch_x @ weight, dim=-1)
                d_probs = (probs - target.index_select(0, index)).mul_(2.0 / probs.numel())  # d(MSE)/d(probs)
                d_logits = probs * (d_probs - (d_probs * probs).sum(-1, keepdim=True))
                optimizer.step(batch_x.t() @ d_logits)
        epoch += settings.regressor_epochs_per_check
        prediction = expected(dev_x, weight)
        score = 0.0 if np.std(prediction) == 0 else float(pearsonr(prediction, dev_scores)[0])
        if score > best:
            best, best_weight = score, weight.clone()
        else:
            if waited >= settings.regressor_patience:
                break
            waited += 1
    return best, expected(test_x, best_weight)


#: SentEval ranks ImageCaptionRetrieval's dev and test images in 5 folds
RANKING_FOLDS = 5


def retrieval_ranks(image_vectors, caption_vectors) -> tuple[np.ndarray, np.ndarray]:
    """0-based ranks exactly as SentEval's ``i2t``/``t2i``: a target's position in
    ``np.argsort(scores)[::-1]``. For each image, the best position among all captions of its 5
    captions (``5n .. 5n+4``); for each caption, the position of its image among all images.
    Inputs are projected vectors, ``[N, P]`` and ``[5N, P]``.

    Exact ties (duplicate captions) are therefore ordered as numpy's sort leaves them, one tied
    item ahead of another, as in SentEval, not all counted first."""
    import torch

    images, captions = torch.as_tensor(image_vectors), torch.as_tensor(caption_vectors)
    scores = (images @ captions.t()).cpu().numpy()  # [N, 5N] float32, as SentEval's scores
    n = len(images)
    own_images = np.arange(n)
    image_positions = _descending_positions(scores).reshape(n, n, 5)[own_images, own_images]  # [N, 5]
    caption_positions = _descending_positions(np.ascontiguousarray(scores.T))  # [5N, N]
    return image_positions.min(-1), caption_positions[np.arange(5 * n), np.arange(5 * n) // 5]


def _descending_positions(scores: np.ndarray) -> np.ndarray:
    """``positions[i, j]``: where column ``j`` lands in ``np.argsort(scores[i])[::-1]``."""
    order = np.argsort(scores, axis=1)[:, ::-1]
    positions = np.empty(order.shape, dtype=np.int64)
    np.put_along_axis(positions, order, np.arange(order.shape[1])[None, :], axis=1)
    return positions


def recalls(ranks: np.ndarray) -> tuple[float, float, float, float]:
    """(R@1, R@5, R@10) in percent and the median rank (1-based, SentEval's ``floor(median) + 1``)."""
    ranks = np.asarray(ranks)
    return (*(100.0 * float(np.mean(ranks < k)) for k in (1, 5, 10)), float(np.floor(np.median(ranks)) + 1))


def ranking(train: tuple, dev: tuple, test: tuple, settings: ClassifierSettings, seed: int):
    """SentEval's ``ImageSentenceRankingPytorch`` (ImageCaptionRetrieval).

    ``train``/``dev``/``test`` are ``(image features [N, Di], caption vectors [5N, Ds])``, caption
    ``c`` belonging to image ``c // 5``. Two linear projections onto the unit sphere (Adam, batch
    128) are trained with a margin ranking loss against 30 contrastive images and captions per
    pair, drawn from the rest of the epoch's permutation as SentEval draws them; after each epoch
    the dev folds are ranked, and training stops after ``ranking_patience`` epochs without gain
    (at most ``ranking_max_epoch + 1``, as SentEval's ``<=``). Returns ``(devacc, image_to_text,
    text_to_image)``: devacc is SentEval's (the six recalls summed, mean over dev folds); each
    direction is (R@1, R@5, R@10, median rank), the mean over the test folds."""
    import copy

    import torch

    s = settings
    device = torch.device(s.ranking_device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rng = np.random.RandomState(seed)  # SentEval's np.random.seed(seed)
    generator = torch.Generator().manual_seed(seed)  # SentEval's torch.manual_seed(seed), then the two layers
    train_images, train_text = (torch.as_tensor(np.asarray(a, dtype=np.float32)).to(device) for a in train)
    projections = torch.nn.ModuleList()
    for in_features in (train_images.shape[1], train_text.shape[1]):  # SentEval builds imgproj, then sentproj
        layer = torch.nn.Linear(in_features, s.ranking_projdim)
        weight, bias = _linear_init(in_features, s.ranking_projdim, seed, generator)
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
        projections.append(layer)
    projections.to(device)
    optimizer = torch.optim.Adam(projections.parameters())

    def project(which: int, x):
        out = projections[which](x)
        return out / out.pow(2).sum(1, keepdim=True).sqrt()

    def evaluate(images, text) -> tuple[float, tuple, tuple]:
        images, text = (torch.as_tensor(np.asarray(a, dtype=np.float32)).to(device) for a in (images, text))
        folds = []
        with torch.no_grad():
            for fold in range(RANKING_FOLDS):
                n = s.ranking_fold_images
                image_ranks, caption_ranks = retrieval_ranks(
                    project(0, images[fold * n : (fold + 1) * n]), project(1, text[5 * fold * n : 5 * (fold + 1) * n])
                )
                folds.append((recalls(image_ranks), recalls(caption_ranks)))
        image_to_text, text_to_image = (
            tuple(float(np.mean([f[d][m] for f in folds])) for m in range(4)) for d in (0, 1)
        )
        score = float(np.mean([sum(f[0][:3]) + sum(f[1][:3]) for f in folds]))
        return score, image_to_text, text_to_image

    n = len(train_text)
    best, best_state, waited, epoch = -1.0, None, 0, 0
    while epoch <= s.ranking_max_epoch:
        permutation = rng.permutation(n)
        for start in range(0, n, s.ranking_batch_size):
            index = permutation[start : start + s.ranking_batch_size]
            b = len(index)
            contrast = []
            for _ in range(
                2
            ):  # SentEval's np.random.choice over the permutation minus this batch, images then captions
                j = rng.randint(0, n - b, s.ranking_contrast * b)
                contrast.append(
                    torch.as_tensor(np.where(j < start, permutation[j], permutation[np.minimum(j + b, n - 1)]))
                )
            index = torch.as_tensor(index)
            image = project(0, train_images[(index // 5).to(device)])  # [b, P]
            text = project(1, train_text[index.to(device)])
            image_c = project(0, train_images[(contrast[0] // 5).to(device)]).view(b, s.ranking_contrast, -1)
            text_c = project(1, train_text[contrast[1].to(device)]).view(b, s.ranking_contrast, -1)
            anchor = (image * text).sum(-1, keepdim=True)  # [b, 1]
            image_vs_text_c = (image[:, None, :] * text_c).sum(-1)  # [b, contrast]
            text_vs_image_c = (text[:, None, :] * image_c).sum(-1)
            loss = (s.ranking_margin - anchor + image_vs_text_c).clamp(min=0).sum() + (
                s.ranking_margin - anchor + text_vs_image_c
            ).clamp(min=0).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        epoch += 1
        score = evaluate(*dev)[0]
        if score > best:
            best, best_state = score, copy.deepcopy(projections.state_dict())
        else:
            if waited >= s.ranking_patience:
                break
            waited += 1
    projections.load_state_dict(best_state)
    _, image_to_text, text_to_image = evaluate(*test)
    return best, image_to_text, text_to_image
