"""Export a trained model for transformers and sentence-transformers, and load it back.

An export folder holds:
- the Hugging Face checkpoint: ``config.json``, ``model.safetensors`` (with the masked-LM head
  when the model trained with MLM, so ``AutoModelForMaskedLM`` can continue training; ``AutoModel``
  loads the bare transformer from it), and the tokenizer files;
- ``declutr_pooling.json`` (+ ``declutr_pooling.safetensors`` when the pooler or projection head
  has weights): how declutr turns token vectors into embeddings at inference. A projection head
  is stored only when it is used at inference (``feedforward.at_inference``); otherwise the
  export's embeddings are the pooler's, as the reference's ``embeddings`` were;
- when sentence-transformers can express the pooling (``mean`` with special tokens, ``cls``,
  ``cls_mlp`` (= ``cls`` at inference), ``max``; no projection head): ``modules.json``,
  ``sentence_bert_config.json``, ``1_Pooling/config.json`` and ``config_sentence_transformers.json``.

``declutr_pooling.json``::

    {"format_version": 1, "hidden_size": 768,
     "pooler": {"type": "mean", "exclude_special_tokens": false},
     "feedforward": null | {"hidden_dims": [...], "activations": [...], "dropout": 0.0, "at_inference": true},
     "normalize": false, "sentence_transformers": true}
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch

from declutr.core.atomic import staged_directory
from declutr.modules.encoders import dtype_kwarg, last_hidden_state, quiet_transformers
from declutr.modules.heads import EmbeddingHead, FeedForward
from declutr.modules.poolers import Pooler

logger = logging.getLogger(__name__)

POOLING_CONFIG = "declutr_pooling.json"
POOLING_WEIGHTS = "declutr_pooling.safetensors"
FORMAT_VERSION = 1
#: declutr pooler -> sentence-transformers pooling mode (what the pooler computes at inference)
ST_POOLING_MODES = {"mean": "mean", "cls": "cls", "cls_mlp": "cls", "max": "max"}
#: architectures whose position ids start after the padding index (two positions unusable)
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer"}


class EmbeddingModel(NamedTuple):
    """A loaded export: the bare transformer, its tokenizer and the pooling head (eval mode).

    ``model(input_ids=..., attention_mask=...).last_hidden_state`` gives the token vectors and
    ``pooler(hidden_states, attention_mask, special_tokens_mask)`` the embeddings; ``embed``
    does both, exactly as ``Model.embed`` does in training.
    """

    model: torch.nn.Module
    tokenizer: Any
    pooler: EmbeddingHead

    @torch.no_grad()
    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, special_tokens_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.pooler(
            last_hidden_state(self.model, input_ids, attention_mask), attention_mask, special_tokens_mask
        )


def registered_name(component: torch.nn.Module, kind: type) -> str:
    for name, (cls, constructor) in type(component).kind()._registry[kind].items():
        if cls is type(component) and constructor is None:
            return name
    raise ValueError(f"{type(component).__name__} is not a registered {kind.kind_name}; it cannot be exported")


def describe(component: torch.nn.Module, skip: tuple[str, ...] = ("input_dim",)) -> dict[str, Any]:
    """A component's constructor arguments (stored as same-named attributes), without injected ones."""
    result = {}
    for cls in type(component).__mro__:
        if "__init__" not in cls.__dict__ or cls in (torch.nn.Module, object):
            continue
        for name in inspect.signature(cls.__dict__["__init__"]).parameters:
            if (
                name not in ("self", "args", "kwargs")
                and name not in skip
                and name not in result
                and hasattr(component, name)
            ):
                value = getattr(component, name)
                result[name] = list(value) if isinstance(value, tuple) else value
    return result


def pooling_description(head: EmbeddingHead, hidden_size: int) -> dict[str, Any]:
    pooler = head.pooler
    description = {
        "format_version": FORMAT_VERSION,
        "hidden_size": hidden_size,
        "pooler": {"type": registered_name(pooler, Pooler), **describe(pooler)},
        "feedforward": describe(head.feedforward) if head.feedforward is not None else None,
        "normalize": head.normalize,
    }
    description["sentence_transformers"] = sentence_transformers_mode(description) is not None
    return description


def sentence_transformers_mode(description: dict[str, Any]) -> str | None:
    """The sentence-transformers pooling mode equal to this pooling, or ``None`` if there is none."""
    pooler = description["pooler"]
    if description.get("feedforward") or description.get("normalize") or pooler.get("exclude_special_tokens"):
        return None
    return ST_POOLING_MODES.get(pooler["type"])


def max_sequence_length(config: Any, tokenizer: Any) -> int:
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and getattr(config, "model_type", "") in _OFFSET_POSITIONS:
        positions -= 2
    limit = getattr(tokenizer, "model_max_length", None)
    candidates = [n for n in (positions, limit) if isinstance(n, int) and 0 < n < 1_000_000]
    return min(candidates) if candidates else 512


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def write_sentence_transformers_files(directory: Path, mode: str, dimension: int, max_seq_length: int) -> None:
    """modules.json (Transformer + Pooling), in the long-standing format every version reads."""
    write_json(
        directory / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ],
    )
    write_json(directory / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    write_json(
        directory / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": dimension,
            "pooling_mode_cls_token": mode == "cls",
            "pooling_mode_mean_tokens": mode == "mean",
            "pooling_mode_max_tokens": mode == "max",
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    write_json(
        directory / "config_sentence_transformers.json",
        {
            "prompts": {},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def export_model(model: Any, directory: str | os.PathLike) -> Path:
    """Write ``model`` (a ``declutr.models.Model``) to ``directory``, replacing what is there.

    The folder is written under a temporary name next to ``directory`` and renamed into place.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    encoder, head = model.encoder, model.head.for_inference()  # a projection head only if used at inference
    if not hasattr(encoder, "save_pretrained"):
        raise ValueError(f"{type(encoder).__name__} cannot be saved as a Hugging Face checkpoint")
    tokenizer = model.tokenizer
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(encoder.model_name, trust_remote_code=encoder.trust_remote_code)
    with staged_directory(directory) as staging:
        encoder.save_pretrained(staging)
        tokenizer.save_pretrained(str(staging))
        description = pooling_description(head, encoder.hidden_size)
        write_json(staging / POOLING_CONFIG, description)
        weights = {name: tensor.detach().cpu().contiguous() for name, tensor in head.state_dict().items()}
        if weights:
            save_file(weights, str(staging / POOLING_WEIGHTS))
        mode = sentence_transformers_mode(description)
        if mode is not None:
            config = encoder.model.config
            write_sentence_transformers_files(
                staging, mode, encoder.hidden_size, max_sequence_length(config, tokenizer)
            )
        else:
            logger.warning(
                "sentence-transformers cannot express this pooling (%s%s): the export has no modules.json; "
                "load it with declutr (declutr.io.export.load_embedding_model or the Encoder)",
                description["pooler"]["type"],
                " + projection head" if description["feedforward"] else "",
            )
    return directory


def _sentence_transformers_pooling(directory: Path) -> tuple[Path, dict[str, Any], int | None]:
    """From a sentence-transformers folder: the transformer's folder, a pooling description, max length."""
    modules = json.loads((directory / "modules.json").read_text(encoding="utf-8"))
    transformer_dir, pooler, normalize, max_length = directory, None, False, None
    for module in modules:
        kind = module["type"].rsplit(".", 1)[-1]
        path = directory / module.get("path", "")
        if kind == "Transformer":
            transformer_dir = path
            config_file = path / "sentence_bert_config.json"
            if config_file.is_file():
                max_length = json.loads(config_file.read_text(encoding="utf-8")).get("max_seq_length")
        elif kind == "Pooling":
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            modes = (
                config.get("pooling_mode")
                or [
                    name
                    for key, name in (
                        ("pooling_mode_cls_token", "cls"),
                        ("pooling_mode_mean_tokens", "mean"),
                        ("pooling_mode_max_tokens", "max"),
                    )
                    if config.get(key)
                ]
                or ["unsupported"]
            )
            modes = [modes] if isinstance(modes, str) else list(modes)
            if (
                len(modes) != 1
                or modes[0] not in ("cls", "mean", "max")
                or config.get("pooling_mode_mean_sqrt_len_tokens")
                or config.get("pooling_mode_weightedmean_tokens")
                or config.get("pooling_mode_lasttoken")
            ):
                raise ValueError(f"{path}: sentence-transformers pooling {config} is not supported by declutr")
            pooler = {"type": modes[0]}
        elif kind == "Normalize":
            normalize = True
        else:
            raise ValueError(f"{directory}: sentence-transformers module {module['type']} is not supported by declutr")
    description = {"pooler": pooler or {"type": "mean"}, "feedforward": None, "normalize": normalize}
    return transformer_dir, description, max_length


def load_embedding_model(
    path: str | os.PathLike, device: str | torch.device | None = None, trust_remote_code: bool = False
) -> EmbeddingModel:
    """Load an export (or any Hugging Face / sentence-transformers checkpoint folder) for inference.

    Returns ``EmbeddingModel(model, tokenizer, pooler)``, unpackable as a triple: ``model`` is the
    bare transformer (``AutoModel``, float32, SDPA attention, eval mode), ``tokenizer`` its fast
    tokenizer and ``pooler`` an ``EmbeddingHead`` in eval mode mapping ``(hidden_states,
    attention_mask, special_tokens_mask)`` to embeddings. ``EmbeddingModel.embed(input_ids,
    attention_mask, special_tokens_mask)`` runs both, the same computation as ``Model.embed``.
    Tokenize with ``tokenizer(texts, padding=True, truncation=True, return_special_tokens_mask=True,
    return_tensors="pt")``; ``tokenizer.model_max_length`` is capped at the sentence-transformers
    ``max_seq_length`` when the folder has one.

    Pooling comes from ``declutr_pooling.json`` when present, else from the sentence-transformers
    files (Transformer, Pooling cls/mean/max, Normalize), else mean pooling over all non-padding
    tokens (how the published DeCLUTR checkpoints are used).
    """
    from transformers import AutoModel, AutoTokenizer

    from declutr.core.construct import build

    directory = Path(path)
    if not directory.is_dir():
        raise ValueError(f"{directory}: not a model folder")
    transformer_dir, max_length = directory, None
    if (directory / POOLING_CONFIG).is_file():
        description = json.loads((directory / POOLING_CONFIG).read_text(encoding="utf-8"))
        if description.get("format_version", 1) > FORMAT_VERSION:
            raise ValueError(
                f"{directory / POOLING_CONFIG}: written by a newer declutr (format {description['format_version']})"
            )
        if (directory / "sentence_bert_config.json").is_file():
            max_length = json.loads((directory / "sentence_bert_config.json").read_text(encoding="utf-8")).get(
                "max_seq_length"
            )
    elif (directory / "modules.json").is_file():
        transformer_dir, description, max_length = _sentence_transformers_pooling(directory)
    else:
        description = {"pooler": {"type": "mean"}, "feedforward": None, "normalize": False}

    with quiet_transformers():  # an export's masked-LM head and the unused pooler layer are expected, not news
        model, loading = AutoModel.from_pretrained(
            str(transformer_dir),
            attn_implementation="sdpa",
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
            **{dtype_kwarg(): torch.float32},
        )
    missing = [key for key in loading.get("missing_keys") or () if not key.startswith("pooler.")]
    if missing:  # anything but the pooler layer (which declutr does not use) is news
        logger.warning(
            "%s: %d tensors not in the checkpoint, initialised randomly (%s)",
            directory,
            len(missing),
            ", ".join(missing[:3]),
        )
    tokenizer = AutoTokenizer.from_pretrained(str(transformer_dir), trust_remote_code=trust_remote_code)
    if max_length is not None and (tokenizer.model_max_length is None or tokenizer.model_max_length > max_length):
        tokenizer.model_max_length = max_length
    hidden_size = int(model.config.hidden_size)
    pooler = build(Pooler, description["pooler"], path="pooler", extras={"input_dim": hidden_size})
    feedforward = None
    if description.get("feedforward"):
        # an export stores a projection head only when it is used at inference (older ones without the key, too)
        stored = {"at_inference": True, **description["feedforward"]}
        feedforward = build(FeedForward, stored, path="feedforward", extras={"input_dim": pooler.output_dim})
    head = EmbeddingHead(pooler, feedforward, normalize=bool(description.get("normalize")))
    if (directory / POOLING_WEIGHTS).is_file():
        from safetensors.torch import load_file

        head.load_state_dict(load_file(str(directory / POOLING_WEIGHTS)))
    model.to(device or "cpu").eval()
    head.to(device or "cpu").eval()
    return EmbeddingModel(model, tokenizer, head)
