"""``Encoder``: texts in, a float32 numpy array of embeddings out, in input order.

    from declutr import Encoder
    encoder = Encoder("runs/declutr-small")          # a run dir, an export, or any HF checkpoint
    vectors = encoder(["A sentence.", "Another one."])  # [2, D]

Fast by construction: every call tokenises its texts once (no padding), sorts them by token
length and forms batches of similar length (little padding), runs the transformer under
``torch.inference_mode`` (autocast to fp16/bf16 on CUDA), and writes each batch's vectors
straight into the output array at the texts' original positions.

Texts longer than the model's limit are truncated (``long_text="truncate"``, the default; the
call logs how many were cut) or embedded whole (``long_text="chunk"``): split into windows of
the model's maximum length, special tokens added per window, and the windows' pooled vectors
combined as whole-text pooling would combine the tokens (docs/evaluation.md, "Long texts").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from declutr.core.errors import DeclutrError, first_line
from declutr.inference.long_text import (
    WindowCombiner,
    check_chunking,
    count_long,
    first_windows,
    pooling_masks,
    windows,
)

logger = logging.getLogger(__name__)

#: a call with at least this many texts shows a progress bar (unless told otherwise)
PROGRESS_THRESHOLD = 2048

#: what ``Encoder(long_text=...)`` does with a text longer than the model's limit
LONG_TEXT_MODES = ("truncate", "chunk")
#: ``Encoder(precision=...)``: ``auto`` autocasts to bf16 (fp16 without bf16) on CUDA, float32 elsewhere
PRECISIONS = ("auto", "float32", "bfloat16", "float16")


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
    ids, special, _ = first_windows(tokenizer, texts, max_length)
    yield from _length_sorted_batches(tokenizer, ids, [special], batch_size, device)


def _length_sorted_batches(
    tokenizer, ids: list[list[int]], masks: list[list[list[int]]], batch_size: int, device
) -> Iterator[tuple]:
    """``(positions, input_ids, attention_mask, *masks)``: the sequences ``ids`` (and each list of
    per-sequence ``masks``, aligned with them) longest first, ``batch_size`` at a time, each batch
    padded to its longest sequence and moved to ``device``."""
    import torch

    order = np.argsort(-np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)), kind="stable")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        width = len(ids[index[0]])
        input_ids = torch.full((len(index), width), pad_id, dtype=torch.long)
        padded = [torch.zeros((len(index), width), dtype=torch.long) for _ in range(len(masks) + 1)]
        for row, i in enumerate(index):
            length = len(ids[i])
            input_ids[row, :length] = torch.tensor(ids[i], dtype=torch.long)
            padded[0][row, :length] = 1
            for mask, values in zip(padded[1:], masks):
                mask[row, :length] = torch.tensor(values[i], dtype=torch.long)
        yield (index, *(t.to(device, non_blocking=True) for t in (input_ids, *padded)))


class Encoder:
    """Embed texts with a DeCLUTR run, an exported model or any Hugging Face checkpoint.

    # Parameters
    model_name_or_path_or_run_dir : a run directory (its ``model/`` export is used), a model
        folder (a declutr export, a sentence-transformers folder, or a plain Hugging Face
        checkpoint) or a Hugging Face hub name.
    device : ``"cuda"``, ``"cpu"``, ... (default: CUDA when available).
    batch_size : texts per forward pass.
    normalize : L2-normalise every embedding (``True``), never (``False``: the raw pooled
        vectors, a sentence-transformers ``Normalize`` module switched off) or as the model does
        (``None``, the default: normalised when the folder's ``modules.json`` lists ``Normalize``).
    sphereize : subtract the centroid of the call's embeddings, then L2-normalise (DeCLUTR's
        "sphereize"); needs at least two texts per call.
    pooler : override the folder's pooling: a registered ``Pooler`` name (``mean``, ``cls``,
        ``max``, ...) or a config dict such as ``{"type": "mean", "exclude_special_tokens": true}``.
        The default is the export's pooling, else the sentence-transformers ``1_Pooling`` mode,
        else mean pooling over all non-padding tokens (special tokens included).
    max_length : the most tokens the model reads at once, special tokens included (default: the
        model's limit): longer texts are truncated to it, or chunked into windows of it.
    long_text : ``"truncate"`` (default): a text longer than ``max_length`` is cut to it, and each
        call logs a warning saying how many texts were cut; ``"chunk"``: it is split into windows
        of ``max_length`` tokens (special tokens added to each), every window is embedded with
        the model's pooling and the windows are combined as that pooling combines tokens: mean
        pooling by the mean of the window vectors weighted by the tokens each averaged (``cnn``
        likewise), max pooling by the element-wise maximum; ``cls`` pooling refuses (its one
        token is in the first window only). A projection head and a ``Normalize`` module apply
        after combining. ``long_texts`` holds how many texts of the last call were too long.
    stride : with ``chunk``, the tokens each window shares with the one before it (0: windows
        side by side). A shared token is pooled once, from the window in which it has more
        context (the first half of the overlap from the earlier window, the rest from the later).
    precision : the forward pass's arithmetic. ``"auto"`` (default) autocasts to bfloat16 on CUDA
        (float16 where bf16 is unsupported) and runs float32 elsewhere; ``"float32"`` never
        autocasts (CUDA results then match the CPU's to about 1e-6); ``"bfloat16"`` autocasts on
        CUDA and on CPU; ``"float16"`` autocasts on CUDA only. The vectors returned are float32
        whatever the precision.
    """

    def __init__(
        self,
        model_name_or_path_or_run_dir: str | os.PathLike,
        device: str | None = None,
        batch_size: int = 32,
        normalize: bool | None = None,
        sphereize: bool = False,
        pooler: str | dict | None = None,
        max_length: int | None = None,
        long_text: str = "truncate",
        stride: int = 0,
        precision: str = "auto",
    ):
        import torch

        if batch_size <= 0:
            raise DeclutrError(f"batch_size must be positive, got {batch_size}")
        if long_text not in LONG_TEXT_MODES:
            raise DeclutrError(f'long_text must be "truncate" or "chunk", got {long_text!r}')
        if precision not in PRECISIONS:
            raise DeclutrError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if stride and long_text != "chunk":
            raise DeclutrError(f'stride {stride} applies to long_text="chunk" only (long_text is {long_text!r})')
        self.batch_size, self.sphereize = batch_size, sphereize
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if precision == "float16" and self.device.type != "cuda":
            raise DeclutrError(f"precision float16 needs a CUDA device, the Encoder runs on {self.device}")
        self.precision = precision
        self.source, local = resolve_model_path(model_name_or_path_or_run_dir)
        self.model, self.tokenizer, self.head = self._load(self.source, local, pooler)
        #: whether the model itself normalises (a sentence-transformers ``Normalize`` module)
        self.model_normalizes = bool(self.head.normalize)
        self.normalize_choice = "model's own" if normalize is None else "on" if normalize else "off"
        self.normalize = self.model_normalizes if normalize is None else bool(normalize)
        self.head.normalize = self.normalize
        self.max_length = max_length or self._model_max_length()
        self.long_text, self.stride, self.long_texts = long_text, stride, 0
        if long_text == "chunk":
            check_chunking(self.head, self.tokenizer, self.max_length, self.stride, self.source)
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
            raise DeclutrError(f"cannot load model {source}: {first_line(error)}") from None
        if not getattr(tokenizer, "is_fast", False):
            raise DeclutrError(f"{source}: declutr needs a fast (Rust) tokenizer")
        if pooler is not None:
            pooled = self._build_pooler(pooler, int(model.config.hidden_size))
            head = EmbeddingHead(pooled, normalize=head.normalize).to(self.device).eval()
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
            if "\n" not in inputs and len(inputs) < 4096 and _is_file(inputs):
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
        """``[len(texts), D]`` float32 embeddings of ``texts`` in order; sets ``long_texts`` (and
        logs a warning when ``long_text="truncate"`` cut any)."""
        if not texts:
            self.long_texts = 0
            return np.zeros((0, self.dimension), dtype=np.float32)
        progress = len(texts) >= PROGRESS_THRESHOLD if show_progress is None else show_progress
        if self.long_text == "chunk":
            output = self._embed_chunked(texts, batch_size, progress)
        else:
            bar = _progress_bar(len(texts), progress)
            output = None
            for index, vectors in self.iter_batches(texts, batch_size):
                if output is None:
                    output = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
                output[index] = vectors
                bar.update(len(index))
            bar.close()
            self.warn_truncated(self.long_texts, len(texts))
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
        """``(positions, float32 vectors)`` per length-sorted batch (L2-normalised when ``normalize``; never
        sphereized); texts longer than ``max_length`` are truncated (``long_texts`` counts them), whatever ``long_text``."""
        ids, special, self.long_texts = first_windows(self.tokenizer, texts, self.max_length)
        for index, hidden, attention, special_mask in self._forward(ids, [special], batch_size):
            vectors = self.head(hidden, attention, special_mask)
            yield index, vectors.float().cpu().numpy()

    def _forward(self, ids: list[list[int]], masks: list[list[list[int]]], batch_size: int | None) -> Iterator[tuple]:
        """``(positions, float32 last hidden states, attention_mask, *masks)`` per length-sorted batch
        of the sequences ``ids``, under ``torch.inference_mode`` and the precision's autocast."""
        import torch

        autocast = self._autocast()
        with torch.inference_mode():
            for index, input_ids, attention, *padded in _length_sorted_batches(
                self.tokenizer, ids, masks, batch_size or self.batch_size, self.device
            ):
                with autocast:
                    hidden = self.model(input_ids=input_ids, attention_mask=attention).last_hidden_state
                yield index, hidden.float(), attention, *padded

    def _embed_chunked(self, texts: Sequence[str], batch_size: int | None, progress: bool) -> np.ndarray:
        """``long_text="chunk"`` (``declutr.inference.long_text``): every window pooled over the
        tokens it contributes, the windows of each text combined, then projection and normalisation."""
        ids, special, owners = windows(self.tokenizer, texts, self.max_length, self.stride)
        self.long_texts = count_long(owners)
        combiner = WindowCombiner(self.head, owners, len(texts))
        bar = _progress_bar(len(ids), progress, unit="window")
        for index, *batch in self._forward(ids, [special, pooling_masks(special, owners, self.stride)], batch_size):
            combiner.add(index, *batch)
            bar.update(len(index))
        bar.close()
        return combiner.vectors(self.device)

    def warn_truncated(self, long_texts: int, total: int) -> None:
        """Log the one warning per call that says how many texts ``long_text="truncate"`` cut (if any)."""
        if long_texts and self.long_text == "truncate":
            logger.warning("%s", self.long_text_summary(long_texts, total))

    def long_text_summary(self, long_texts: int, total: int) -> str:
        """One line: how many of ``total`` texts were longer than ``max_length`` and what was done."""
        line = f"{long_texts} of {total} texts were longer than the model's limit of {self.max_length} tokens"
        if not long_texts:
            return line
        if self.long_text == "truncate":
            return f'{line}: truncated to it (long_text="chunk" / --long-text chunk embeds them whole)'
        return f"{line}: embedded whole, in windows of {self.max_length} tokens (stride {self.stride})"

    def _autocast(self) -> Any:
        import contextlib

        import torch

        dtype = self.autocast_dtype
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    @property
    def autocast_dtype(self) -> Any:
        """The autocast dtype of the forward pass (None: float32 throughout)."""
        import torch

        if self.precision == "float32" or (self.precision == "auto" and self.device.type != "cuda"):
            return None
        if self.precision == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
        return getattr(torch, self.precision)

    def describe(self) -> dict[str, Any]:
        """How the embeddings are made: the pooling (registered name and arguments), a projection
        head used at inference, and whether vectors are L2-normalised and why."""
        from declutr.io.export import describe, registered_name
        from declutr.modules.poolers import Pooler

        pooler = self.head.pooler
        try:
            pooling = {"type": registered_name(pooler, Pooler), **describe(pooler)}
        except ValueError:
            pooling = {"type": type(pooler).__name__}
        return {
            "pooling": pooling,
            "projection": self.head.projects_at_inference,
            "normalized": self.normalize or self.sphereize,
            "normalize": "sphereize" if self.sphereize else self.normalize_choice,
            "model_normalizes": self.model_normalizes,
            "precision": str(self.autocast_dtype or "float32").removeprefix("torch."),
        }

    def __repr__(self) -> str:
        return f"Encoder({self.source!r}, device={str(self.device)!r}, precision={self.precision!r}, dimension={self.dimension})"


def _is_file(text: str) -> bool:
    """Whether ``text`` names an existing file (a long sentence is not a path, not an OSError)."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def _progress_bar(total: int, enabled: bool, unit: str = "text"):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit=unit, desc="embedding", leave=False)
