"""``Encoder``: texts in, a float32 numpy array of embeddings out, in input order.

    from declutr import Encoder
    encoder = Encoder("runs/declutr-small")          # a run dir, an export, or any HF checkpoint
    vectors = encoder(["A sentence.", "Another one."])  # [2, D]

Fast by construction: every call tokenises its texts once (no padding), sorts them by token
length and forms batches of similar length (little padding), runs the transformer under
``torch.inference_mode`` (autocast to fp16/bf16 on CUDA), and writes each batch's vectors
straight into the output array at the texts' original positions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from declutr.core.errors import DeclutrError

#: a call with at least this many texts shows a progress bar (unless told otherwise)
PROGRESS_THRESHOLD = 2048


def resolve_model_path(model: str | os.PathLike) -> tuple[str, bool]:
    """``(path or hub name, is_local_folder)``: a run directory maps to its ``model/`` export."""
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "model").is_dir() and (path / "model" / "config.json").is_file():
            return str(path / "model"), True  # a run directory (its config.json is the experiment's)
        if (path / "config.json").is_file() or (path / "modules.json").is_file():
            return str(path), True
        raise DeclutrError(f"{path} is neither a run directory (no model/ inside) nor a model folder (no config.json)")
    if path.exists():
        raise DeclutrError(f"{path} is a file; give a run directory, a model folder or a Hugging Face checkpoint name")
    text = str(model)
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        raise DeclutrError(f"model {text} does not exist (not a folder, and not a Hugging Face name like org/model)")
    return text, False


def read_texts(path: str | os.PathLike) -> list[str]:
    """One text per line (UTF-8); a trailing newline does not add an empty text."""
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def padded_batches(tokenizer, texts: Sequence[str], batch_size: int, max_length: int, device) -> Iterator[tuple]:
    """``(positions, input_ids, attention_mask, special_tokens_mask)`` for length-sorted batches
    of ``texts``, each padded to its own longest text and moved to ``device``."""
    import torch

    encoded = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        padding=False,
        return_special_tokens_mask=True,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    ids, special = encoded["input_ids"], encoded["special_tokens_mask"]
    order = np.argsort(-np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)), kind="stable")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        width = len(ids[index[0]])
        input_ids = torch.full((len(index), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(index), width), dtype=torch.long)
        special_mask = torch.zeros((len(index), width), dtype=torch.long)
        for row, i in enumerate(index):
            length = len(ids[i])
            input_ids[row, :length] = torch.tensor(ids[i], dtype=torch.long)
            attention[row, :length] = 1
            special_mask[row, :length] = torch.tensor(special[i], dtype=torch.long)
        yield (index, *(t.to(device, non_blocking=True) for t in (input_ids, attention, special_mask)))


class Encoder:
    """Embed texts with a DeCLUTR run, an exported model or any Hugging Face checkpoint.

    # Parameters
    model_name_or_path_or_run_dir : a run directory (its ``model/`` export is used), a model
        folder (a declutr export, a sentence-transformers folder, or a plain Hugging Face
        checkpoint) or a Hugging Face hub name.
    device : ``"cuda"``, ``"cpu"``, ... (default: CUDA when available).
    batch_size : texts per forward pass.
    normalize : L2-normalise every embedding.
    sphereize : subtract the centroid of the call's embeddings, then L2-normalise (DeCLUTR's
        "sphereize"); needs at least two texts per call.
    pooler : override the folder's pooling: a registered ``Pooler`` name (``mean``, ``cls``,
        ``max``, ...) or a config dict such as ``{"type": "mean", "exclude_special_tokens": true}``.
        The default is the export's pooling, else the sentence-transformers ``1_Pooling`` mode,
        else mean pooling over all non-padding tokens (special tokens included).
    max_length : truncate texts to this many tokens (default: the model's limit).
    """

    def __init__(
        self,
        model_name_or_path_or_run_dir: str | os.PathLike,
        device: str | None = None,
        batch_size: int = 32,
        normalize: bool = False,
        sphereize: bool = False,
        pooler: str | dict | None = None,
        max_length: int | None = None,
    ):
        import torch

        if batch_size <= 0:
            raise DeclutrError(f"batch_size must be positive, got {batch_size}")
        self.batch_size, self.normalize, self.sphereize = batch_size, normalize, sphereize
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.source, local = resolve_model_path(model_name_or_path_or_run_dir)
        self.model, self.tokenizer, self.head = self._load(self.source, local, pooler)
        self.max_length = max_length or self._model_max_length()
        self.dimension = self._output_dimension()

    # ------------------------------------------------------------------ loading

    def _load(self, source: str, local: bool, pooler: str | dict | None):
        import torch

        from declutr.io.export import load_embedding_model
        from declutr.modules.heads import EmbeddingHead
        from declutr.modules.poolers import MeanPooler

        try:
            if local:
                model, tokenizer, head = load_embedding_model(source, device=self.device)
            else:
                from transformers import AutoModel, AutoTokenizer

                model = AutoModel.from_pretrained(source, attn_implementation="sdpa", dtype=torch.float32)
                tokenizer = AutoTokenizer.from_pretrained(source)
                head = EmbeddingHead(MeanPooler(input_dim=int(model.config.hidden_size)))
                model.to(self.device).eval()
                head.to(self.device).eval()
        except (OSError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DeclutrError(f"cannot load model {source}: {first}") from None
        if not getattr(tokenizer, "is_fast", False):
            raise DeclutrError(f"{source}: declutr needs a fast (Rust) tokenizer")
        if pooler is not None:
            head = EmbeddingHead(self._build_pooler(pooler, int(model.config.hidden_size))).to(self.device).eval()
        return model, tokenizer, head

    @staticmethod
    def _build_pooler(pooler: str | dict, hidden_size: int):
        from declutr.core.construct import build
        from declutr.core.errors import ConfigurationError
        from declutr.modules.poolers import Pooler

        config = {"type": pooler} if isinstance(pooler, str) else dict(pooler)
        try:
            return build(Pooler, config, path="pooler", extras={"input_dim": hidden_size})
        except ConfigurationError as error:
            raise DeclutrError(str(error).splitlines()[0]) from None

    def _model_max_length(self) -> int:
        limit = getattr(self.tokenizer, "model_max_length", None) or 512
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if positions:
            offset = 2 if getattr(self.model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
            limit = min(limit, positions - offset)
        return int(min(limit, 100_000))

    def _output_dimension(self) -> int:
        dimension = getattr(self.head, "output_dim", None)
        if dimension:
            return int(dimension)
        return int(next(self.iter_batches(["dimension probe"]))[1].shape[1])

    # ------------------------------------------------------------------ embedding

    def __call__(
        self,
        inputs: str | os.PathLike | Sequence[str],
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embed ``inputs``: a text (-> ``[D]``), a list of texts or a path to a text file with
        one text per line (-> ``[N, D]``). A ``str`` naming an existing file is read as one."""
        single = False
        if isinstance(inputs, os.PathLike):
            texts = read_texts(inputs)
        elif isinstance(inputs, str):
            if "\n" not in inputs and len(inputs) < 4096 and Path(inputs).is_file():
                texts = read_texts(inputs)
            else:
                texts, single = [inputs], True
        else:
            texts = list(inputs)
            if not all(isinstance(text, str) for text in texts):
                raise DeclutrError("Encoder inputs must be strings")
        embeddings = self.embed(texts, batch_size=batch_size, show_progress=show_progress)
        return embeddings[0] if single else embeddings

    def embed(
        self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool | None = None
    ) -> np.ndarray:
        """``[len(texts), D]`` float32 embeddings of ``texts`` in order."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        progress = len(texts) >= PROGRESS_THRESHOLD if show_progress is None else show_progress
        bar = _progress_bar(len(texts), progress)
        output = None
        for index, vectors in self.iter_batches(texts, batch_size):
            if output is None:
                output = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            output[index] = vectors
            bar.update(len(index))
        bar.close()
        if self.sphereize:
            if len(texts) < 2:
                raise DeclutrError("sphereize needs at least two texts per call (it subtracts their centroid)")
            output -= output.mean(axis=0, keepdims=True)
        if self.normalize or self.sphereize:
            output /= np.maximum(np.linalg.norm(output, axis=1, keepdims=True), 1e-12)
        return output

    def iter_batches(
        self, texts: Sequence[str], batch_size: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(positions, float32 vectors)`` per length-sorted batch (not normalised here)."""
        import torch

        autocast = self._autocast()
        with torch.inference_mode():
            for index, input_ids, attention, special_mask in padded_batches(
                self.tokenizer, texts, batch_size or self.batch_size, self.max_length, self.device
            ):
                with autocast:
                    hidden = self.model(input_ids=input_ids, attention_mask=attention).last_hidden_state
                vectors = self.head(hidden.float(), attention, special_mask)
                yield index, vectors.float().cpu().numpy()

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.device.type != "cuda":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def __repr__(self) -> str:
        return f"Encoder({self.source!r}, device={str(self.device)!r}, dimension={self.dimension})"


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit="text", desc="embedding", leave=False)
