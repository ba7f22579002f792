"""COCO image-caption retrieval (SentEval's ``rank.py``), with a pickle reader that refuses
anything but containers, strings, numbers and numpy arrays."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

import declutr.evaluation.classifiers as classifiers  # noqa: PLR0402 (the module, not via the package)
from declutr.core.errors import DeclutrError
from declutr.evaluation.classifiers import ClassifierSettings
from declutr.evaluation.tasks.base import DOWNLOAD_SCRIPT, Embed, SentEvalTask, embed_all, senteval_tokens


class _COCOUnpickler(pickle.Unpickler):
    """Unpickles only what SentEval's COCO files hold: builtin containers, strings, numbers and
    numpy arrays. Any other global (a class, a function) is refused, so a crafted file cannot run code."""

    def find_class(self, module: str, name: str):
        allowed = _allowed_pickle_globals()
        if (module, name) not in allowed:
            raise DeclutrError(
                f"refusing to unpickle {module}.{name}: the COCO files hold only containers, "
                "strings, numbers and numpy arrays"
            )
        return allowed[(module, name)]


def _allowed_pickle_globals() -> dict:
    import builtins
    import codecs

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed = {("builtins", name): getattr(builtins, name) for name in ("dict", "list", "tuple", "set", "frozenset")}
    for package in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(package, "_reconstruct")] = multiarray._reconstruct
        allowed[(package, "scalar")] = multiarray.scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("_codecs", "encode")] = codecs.encode  # bytes in protocol-2 pickles written by Python 3
    return allowed


def load_pickle(path: Path):
    """A COCO pickle, through :class:`_COCOUnpickler` (``encoding="latin1"`` as SentEval: Python 2 files)."""
    try:
        with open(path, "rb") as file:
            return _COCOUnpickler(file, encoding="latin1").load()
    except DeclutrError as error:
        raise DeclutrError(f"{path}: {error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DeclutrError(f"{path}: not a readable pickle ({type(error).__name__}: {error})") from None


def duplicate_captions(captions: list[str], fold_images: int) -> int:
    """How many of the ranked captions (5 per image, :data:`~classifiers.RANKING_FOLDS` folds of
    ``fold_images`` images) have the same text as a caption of another image in their fold: the
    exact score ties whose order numpy's sort decides, in SentEval as here."""
    count, per_fold = 0, 5 * fold_images
    for start in range(0, classifiers.RANKING_FOLDS * per_fold, per_fold):
        fold = captions[start : start + per_fold]
        images_of: dict[str, set[int]] = {}
        for index, text in enumerate(fold):
            images_of.setdefault(text, set()).add(index // 5)
        count += sum(len(images_of[text]) > 1 for text in fold)
    return count


@SentEvalTask.register("ImageCaptionRetrieval")
class ImageCaptionRetrieval(SentEvalTask):
    """COCO image-caption retrieval as SentEval's ``rank.py``: ``COCO/{train,valid,test}.pkl`` hold
    ResNet-101 image features (``features``), ``image_to_caption_ids`` and ``captions``
    (``cleaned_caption``); the first 5 captions of each image are used, each with " ." appended.
    A ranking model (two linear projections onto the unit sphere, margin 0.2, 30 contrastive
    samples) is trained on train, early-stopped on dev; recall@1/5/10 and median rank, image to
    text and text to image, averaged over 5 folds of 1000 test images."""

    folder, files = "COCO", ("train.pkl", "valid.pkl", "test.pkl")
    source = f"{DOWNLOAD_SCRIPT}, from https://dl.fbaipublicfiles.com/senteval/coco_r101_feat"

    def load(self, filename: str) -> tuple[list[str], np.ndarray]:
        """The captions (5 per image, image by image) and the image features ``[images, D]``."""
        path = self.path(filename)
        data = load_pickle(path)
        keys = ("features", "image_to_caption_ids", "captions")
        if not isinstance(data, dict) or any(key not in data for key in keys):
            raise DeclutrError(
                f"{self.name}: {path}: expected a dict with keys {', '.join(keys)} (SentEval's COCO format)"
            )
        try:
            features = np.asarray(data["features"], dtype=np.float32)
            captions = []
            for image in range(len(features)):
                ids = list(data["image_to_caption_ids"][image])
                if len(ids) < 5:
                    raise DeclutrError(f"{self.name}: {path}: image {image} has {len(ids)} captions; SentEval needs 5")
                captions.extend(senteval_tokens(str(data["captions"][i]["cleaned_caption"]) + " .") for i in ids[:5])
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise DeclutrError(f"{self.name}: {path}: malformed COCO data ({type(error).__name__}: {error})") from None
        if features.ndim != 2:
            raise DeclutrError(f"{self.name}: {path}: features have shape {features.shape}, expected [images, D]")
        return captions, features

    def run(self, embed: Embed, settings: ClassifierSettings, seed: int = 1111) -> dict:
        (train_text, train_images), (dev_text, dev_images), (test_text, test_images) = (
            self.load(f) for f in self.files
        )
        for filename, images in (("valid.pkl", dev_images), ("test.pkl", test_images)):
            if len(images) < classifiers.RANKING_FOLDS * settings.ranking_fold_images:
                raise DeclutrError(
                    f"{self.name}: {self.directory() / filename} has {len(images)} images; SentEval's "
                    f"protocol ranks {classifiers.RANKING_FOLDS} folds of {settings.ranking_fold_images}"
                )
        train_x, dev_x, test_x = embed_all(embed, train_text, dev_text, test_text)
        devacc, image_to_text, text_to_image = classifiers.ranking(
            (train_images, train_x), (dev_images, dev_x), (test_images, test_x), settings, seed
        )
        return {
            "devacc": devacc,
            "acc": [image_to_text, text_to_image],
            "ndev": len(dev_text),
            "ntest": len(test_text),
            "test_duplicate_captions": duplicate_captions(test_text, settings.ranking_fold_images),
            "protocol": "acc: [image to text, text to image] x (R@1, R@5, R@10, median rank), mean of "
            f"{classifiers.RANKING_FOLDS} folds of {settings.ranking_fold_images} test images; "
            "devacc: the same folds' six recalls summed, mean over dev folds",
        }
