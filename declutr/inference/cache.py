"""Embeddings cached on disk: the same model on the same texts is encoded once.

    embed = CachedEncoder("runs/my-run")   # takes Encoder's arguments
    vectors = embed(texts)                 # encodes, writes the cache
    vectors = embed(texts)                 # reads it back: no model loaded, nothing encoded

A call's embeddings are stored under a key made of

- the model's *content*: a SHA-256 of every file the model loads from (weights, configs,
  tokenizer files, sentence-transformers modules such as pooling and normalisation), so a
  retrained or edited model never reads stale vectors, and a copy of the same model hits;
- every ``Encoder`` argument that changes the vectors (pooling override, normalisation,
  sphereize, maximum length, long-text mode and stride, precision), the device type (``auto``
  precision means bfloat16 on CUDA, float32 on the CPU) and the declutr version;
- the texts of the call, in order.

The folder is ``$DECLUTR_CACHE`` (the corpus indexes' cache; default ``~/.cache/declutr``),
``embeddings/<model and settings key>/<texts key>.npy``, one float32 ``[N, D]`` array per
call, written atomically; ``describe.json`` beside them records how the model pools, so a
fully cached evaluation still names its protocol. Deleting the folder is always safe. A hub
name is cached only when its snapshot is already in the local Hugging Face cache (its files
are what gets hashed); otherwise, and with ``enabled=False`` (``--no-cache``), every call encodes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from declutr.core.atomic import atomic_file, atomic_write_text

logger = logging.getLogger(__name__)

#: bumped when the layout or the meaning of cached files changes
CACHE_VERSION = 1
#: the files of a model folder whose content is hashed into the key (by suffix)
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".txt", ".model", ".jsonnet")
#: folders of a model checkpoint no ``Encoder`` reads (other runtimes' copies of the weights)
IGNORED_FOLDERS = {"onnx", "openvino", ".git", ".cache"}
#: the Encoder arguments that change embeddings, with their defaults
EMBEDDING_SETTINGS = {
    "pooler": None,
    "normalize": None,
    "sphereize": False,
    "max_length": None,
    "long_text": "truncate",
    "stride": 0,
    "precision": "auto",
}


def default_cache_directory() -> Path:
    """``$DECLUTR_CACHE``, else ``~/.cache/declutr`` (the same folder as the corpus indexes)."""
    return Path(os.environ.get("DECLUTR_CACHE") or Path.home() / ".cache" / "declutr")


def model_files(folder: str | os.PathLike) -> list[Path]:
    """The files of a model folder that an ``Encoder`` may read, sorted (see ``MODEL_FILE_SUFFIXES``)."""
    folder = Path(folder)
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix in MODEL_FILE_SUFFIXES
        and path.name.lower() != "readme.txt"
        and not IGNORED_FOLDERS & set(path.relative_to(folder).parts[:-1])
    )


def model_fingerprint(model: str | os.PathLike) -> str | None:
    """The SHA-256 of a model's files (relative paths and content), or ``None`` when the model
    cannot be read locally (a hub name not in the local Hugging Face cache)."""
    from declutr.inference.encoder import resolve_model_path

    source, local = resolve_model_path(model)
    folder = Path(source) if local else _hub_snapshot(source)
    if folder is None:
        return None
    digest = hashlib.sha256()
    for path in model_files(folder):
        digest.update(str(path.relative_to(folder).as_posix()).encode("utf-8") + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def _hub_snapshot(name: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except (ImportError, OSError, ValueError):  # no huggingface_hub, not downloaded, not a repo name
        return None


def texts_fingerprint(texts: Sequence[str]) -> str:
    """The SHA-256 of ``texts`` in order (each length-prefixed, so boundaries count)."""
    digest = hashlib.sha256()
    digest.update(len(texts).to_bytes(8, "little"))
    for text in texts:
        data = text.encode("utf-8", errors="surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def settings_key(model_fingerprint: str, settings: dict[str, Any], device_type: str) -> str:
    """The key of one model with one set of embedding settings (a folder of the cache)."""
    from declutr.version import VERSION

    described = {
        "cache": CACHE_VERSION,
        "declutr": VERSION,
        "model": model_fingerprint,
        "device": device_type,
        "settings": {name: settings.get(name, default) for name, default in EMBEDDING_SETTINGS.items()},
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:32]


class CachedEncoder:
    """An :class:`~declutr.inference.encoder.Encoder` whose calls are cached on disk (see the module).

    Called with a list of texts, it returns their ``[N, D]`` float32 embeddings, from the cache
    when the same model, settings and texts were encoded before (the model is then never
    loaded), else from the encoder, and stores them.

    # Parameters
    model : what ``Encoder`` takes (a run directory, a model folder or a hub name).
    cache_directory : the cache's root (default ``$DECLUTR_CACHE`` or ``~/.cache/declutr``).
    enabled : ``False`` encodes every call and reads and writes nothing (``--no-cache``).
    encoder_options : the other ``Encoder`` arguments (``device``, ``batch_size``, ``pooler``,
        ``normalize``, ``precision``, ...).
    """

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        cache_directory: str | os.PathLike | None = None,
        enabled: bool = True,
        **encoder_options: Any,
    ):
        from declutr.inference.encoder import resolve_model_path

        unknown = set(encoder_options) - set(EMBEDDING_SETTINGS) - {"device", "batch_size"}
        if unknown:
            raise TypeError(f"unknown Encoder arguments: {', '.join(sorted(unknown))}")
        resolve_model_path(model)  # a missing model is reported now, not at the first miss
        self.model, self.options = model, encoder_options
        self.root = Path(cache_directory) if cache_directory else default_cache_directory()
        self._encoder = None
        #: calls answered from the cache, calls encoded, and texts encoded
        self.hits = self.misses = self.encoded_texts = 0
        self.directory = self._directory() if enabled else None

    @property
    def enabled(self) -> bool:
        """Whether calls are cached (``False`` with ``enabled=False`` or a model not on disk)."""
        return self.directory is not None

    def _directory(self) -> Path | None:
        fingerprint = model_fingerprint(self.model)
        if fingerprint is None:
            logger.info("%s is not on disk: its embeddings are not cached", self.model)
            return None
        return self.root / "embeddings" / settings_key(fingerprint, self.options, self._device_type())

    def _device_type(self) -> str:
        device = self.options.get("device")
        if device:
            return str(device).split(":")[0]
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def encoder(self):
        """The ``Encoder``, loaded on first use (a fully cached run never loads it)."""
        if self._encoder is None:
            from declutr.inference.encoder import Encoder

            self._encoder = Encoder(self.model, **self.options)
        return self._encoder

    def path(self, texts: Sequence[str]) -> Path | None:
        """Where the embeddings of ``texts`` are (or would be) cached; ``None`` when not cached."""
        return None if self.directory is None else self.directory / f"{texts_fingerprint(texts)}.npy"

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        path = self.path(texts)
        if path is not None:
            vectors = _load(path, len(texts))
            if vectors is not None:
                self.hits += 1
                return vectors
        vectors = np.asarray(self.encoder(texts), dtype=np.float32)
        self.misses += 1
        self.encoded_texts += len(texts)
        if path is not None:
            self._store(path, vectors)
        return vectors

    def _store(self, path: Path, vectors: np.ndarray) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(path, "wb") as handle:
                np.save(handle, vectors)
            describe = path.parent / "describe.json"
            if not describe.is_file():
                atomic_write_text(describe, json.dumps({"model": str(self.model), **self.describe()}, indent=1))
        except OSError as error:  # a full disk or a read-only home must not fail an evaluation
            logger.warning("could not cache embeddings in %s: %s", path.parent, error)

    def describe(self) -> dict[str, Any]:
        """How the embeddings are made (``Encoder.describe()``); read from the cache when the model
        was not loaded."""
        if self._encoder is None and self.directory is not None:
            try:
                described = json.loads((self.directory / "describe.json").read_text(encoding="utf-8"))
                described.pop("model", None)
                return described
            except (OSError, ValueError):
                pass
        return self.encoder.describe()

    def __repr__(self) -> str:
        where = self.directory if self.directory is not None else "off"
        return f"CachedEncoder({str(self.model)!r}, cache={where}, hits={self.hits}, misses={self.misses})"


def _load(path: Path, rows: int) -> np.ndarray | None:
    """The cached array, or ``None`` when absent or unreadable (then it is encoded and rewritten)."""
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if vectors.ndim != 2 or len(vectors) != rows or vectors.dtype != np.float32:
        return None
    return vectors
