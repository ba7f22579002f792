"""Experiment files of the reference implementation (AllenNLP 1.1 schema) in declutr's schema.

``translate(config)`` takes a resolved reference experiment (``vocabulary``,
``dataset_reader.lazy``, ``model.text_field_embedder``, ``trainer.checkpointer``, ...) and
returns ``(declutr_config, messages)``: one message per key it moved, renamed, changed or
dropped, e.g. ``dataset_reader.lazy -> dropped (...)``. Keys it does not know are carried to
the matching place in the new config, so the usual validation reports each of them with its
key path. Keys that mean the same in both schemas (``train_data_path``, ``trainer.num_epochs``,
``trainer.grad_norm``, ``trainer.use_amp``, ``model.loss``, ``distributed``, ...) stay as they
are and are not listed. docs/configs.md has the table of translations.
"""

from __future__ import annotations

import copy
from typing import Any

#: key paths that only the reference schema has; any one of them marks a reference file
MARKERS = (
    ("vocabulary",),
    ("datasets_for_vocab_creation",),
    ("dataset_reader", "lazy"),
    ("dataset_reader", "token_indexers"),
    ("dataset_reader", "num_anchors"),
    ("model", "text_field_embedder"),
    ("model", "seq2vec_encoder"),
    ("trainer", "checkpointer"),
)

#: the reference reader's span-sampling keys and their names in ``dataset_reader.span_sampler``
SAMPLING_KEYS = {
    "num_anchors": "num_anchors",
    "num_positives": "num_positives",
    "min_span_len": "min_span_len",
    "max_span_len": "max_span_len",
    "sampling_strategy": "strategy",
}

#: special tokens around one sequence in the reference's models (RoBERTa ``<s> ... </s>``, BERT
#: ``[CLS] ... [SEP]``): AllenNLP 1.1's ``max_length`` excluded them, declutr's includes them
REFERENCE_SPECIAL_TOKENS = 2

#: where the reference configured its transformer
EMBEDDER = "model.text_field_embedder.token_embedders.tokens"

LAZY_NOTE = (
    "declutr readers always know their length, so the schedule sees the real number of steps; "
    "AllenNLP 1.1 under lazy kept slanted_triangular at lr/ratio after step 0: "
    "trainer.learning_rate_scheduler.reproduce_lazy_bug true reproduces that"
)


def _get(config: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(config, dict) or key not in config:
            return None
        config = config[key]
    return config


def _has(config: dict, path: tuple[str, ...]) -> bool:
    parent = _get(config, path[:-1]) if len(path) > 1 else config
    return isinstance(parent, dict) and path[-1] in parent


def is_reference_config(config: dict[str, Any]) -> bool:
    """Whether ``config`` is in the reference (AllenNLP 1.1) schema."""
    return any(_has(config, path) for path in MARKERS)


def _show(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


class _Translation:
    """The messages of one translation, and helpers that move a key and say so."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def note(self, old: str, new: str, why: str | None = None) -> None:
        self.messages.append(f"{old} -> {new}" + (f" ({why})" if why else ""))

    def drop(self, source: dict, key: str, path: str, why: str) -> None:
        if key in source:
            source.pop(key)
            self.note(path, "dropped", why)

    def move(
        self, source: dict, key: str, target: dict, new_key: str, old_path: str, new_path: str, why: str | None = None
    ) -> None:
        if key in source:
            target[new_key] = source.pop(key)
            if old_path != new_path:
                self.note(old_path, new_path, why)

    def carry(self, source: dict, target: dict, old_path: str, new_path: str) -> None:
        """Keys without a known equivalent: carried over for the validation to report."""
        for key in list(source):
            target[key] = source.pop(key)
            if old_path != new_path:
                self.note(f"{old_path}.{key}", f"{new_path}.{key}", "no known equivalent; checked by the validation")


def translate(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``config`` (reference schema) in declutr's schema, and one message per translated key."""
    source = copy.deepcopy(config)
    t = _Translation()
    result: dict[str, Any] = {}
    trainer = source.get("trainer") if isinstance(source.get("trainer"), dict) else {}
    no_op = trainer.get("type") == "no_op"

    t.drop(source, "vocabulary", "vocabulary", "declutr uses the transformer's own vocabulary")
    t.drop(source, "datasets_for_vocab_creation", "datasets_for_vocab_creation", "no vocabulary is built")
    for key in ("numpy_seed", "pytorch_seed"):
        t.drop(source, key, key, "declutr seeds python, numpy and torch from random_seed")

    for key in ("dataset_reader", "validation_dataset_reader"):
        if isinstance(source.get(key), dict):
            result[key] = _dataset_reader(source.pop(key), key, t)
    if isinstance(source.get("model"), dict):
        result["model"], mlm = _model(source.pop("model"), t, no_op)
        for key in ("dataset_reader", "validation_dataset_reader"):
            if not mlm and isinstance(result.get(key), dict):
                result[key]["mlm_probability"] = None
                t.note(f"{EMBEDDER}.masked_language_modeling false", f"{key}.mlm_probability null", "no masking")
    if isinstance(source.get("trainer"), dict):
        result["trainer"] = _trainer(source.pop("trainer"), t)
    result.update(source)  # train/validation paths, data loaders, distributed, random_seed, unknown keys
    return result, t.messages


def _dataset_reader(reader: dict, path: str, t: _Translation) -> dict:
    result: dict[str, Any] = {}
    t.move(reader, "type", result, "type", f"{path}.type", f"{path}.type")
    if reader.pop("lazy", None) is not None:
        t.note(f"{path}.lazy", "dropped", LAZY_NOTE)
    for key in ("manual_distributed_sharding", "manual_multiprocess_sharding", "manual_multi_process_sharding"):
        t.drop(reader, key, f"{path}.{key}", "declutr always shards by rank and worker")
    t.drop(reader, "token_indexers", f"{path}.token_indexers", "declutr's tokenizer gives the token ids")

    sampler: dict[str, Any] = {}
    for old, new in SAMPLING_KEYS.items():
        if old == "sampling_strategy" and old in reader and reader[old] is None:
            reader.pop(old)
            t.note(f"{path}.sampling_strategy null", f"{path}.span_sampler.strategy default")
            sampler["strategy"] = "default"
            continue
        t.move(reader, old, sampler, new, f"{path}.{old}", f"{path}.span_sampler.{new}")
    if sampler:
        result["span_sampler"] = {"type": "declutr", **sampler}
        if "short_documents" not in reader:
            result["short_documents"] = "error"
            t.note(
                f"{path}.num_anchors (span sampling)",
                f'{path}.short_documents "error"',
                "as the reference, which raised ValueError on a document shorter than "
                'num_anchors * max_span_len * 2 tokens; "skip" skips and counts them',
            )

    tokenizer = reader.pop("tokenizer", None)
    if isinstance(tokenizer, dict):
        tokenizer = dict(tokenizer)
        kind = tokenizer.pop("type", None)
        if kind is not None:
            t.note(
                f"{path}.tokenizer.type {kind}",
                "dropped",
                "declutr's tokenizer is the checkpoint's Hugging Face fast tokenizer",
            )
        if isinstance(tokenizer.get("max_length"), int) and not isinstance(tokenizer["max_length"], bool):
            content = tokenizer["max_length"]
            tokenizer["max_length"] = content + REFERENCE_SPECIAL_TOKENS
            t.note(
                f"{path}.tokenizer.max_length {content}",
                f"{path}.tokenizer.max_length {tokenizer['max_length']}",
                f"AllenNLP 1.1 truncated the content to {content} tokens and then added the special tokens; "
                f"declutr's max_length counts them: {content} + {REFERENCE_SPECIAL_TOKENS} (<s> ... </s>, [CLS] ... [SEP])",
            )
        result["tokenizer"] = tokenizer
    elif tokenizer is not None:
        result["tokenizer"] = tokenizer
    t.carry(reader, result, path, path)
    return result


def _model(model: dict, t: _Translation, no_op: bool) -> tuple[dict, bool]:
    """The model section, and whether the reference trained with masked LM."""
    result: dict[str, Any] = {}
    t.move(model, "type", result, "type", "model.type", "model.type")
    embedder = model.pop("text_field_embedder", None)
    mlm = True
    if isinstance(embedder, dict):
        kind = embedder.pop("type", None)
        if kind is not None:
            t.note(
                f"model.text_field_embedder.type {kind}",
                "dropped",
                "the model decides whether the masked-LM head is loaded",
            )
        token_embedders = dict(embedder.pop("token_embedders", None) or {})
        tokens = dict(token_embedders.pop("tokens", None) or {})
        encoder: dict[str, Any] = {"type": "transformer"}
        kind = tokens.pop("type", None)
        if kind is not None:
            t.note(f"{EMBEDDER}.type {kind}", "model.encoder.type transformer")
        mlm = bool(tokens.pop("masked_language_modeling", kind == "pretrained_transformer_mlm"))
        if mlm and not no_op:
            t.note(
                f"{EMBEDDER}.masked_language_modeling true",
                "model.mlm_weight 1",
                "the default; dataset_reader.mlm_probability 0.15 masks the anchors",
            )
        t.move(tokens, "model_name", encoder, "model_name", f"{EMBEDDER}.model_name", "model.encoder.model_name")
        t.move(
            tokens,
            "gradient_checkpointing",
            encoder,
            "gradient_checkpointing",
            f"{EMBEDDER}.gradient_checkpointing",
            "model.encoder.gradient_checkpointing",
        )
        for key in ("last_layer_only", "train_parameters"):
            if tokens.get(key) is True:
                t.drop(tokens, key, f"{EMBEDDER}.{key}", "declutr's encoder always does this")
        t.carry(tokens, encoder, EMBEDDER, "model.encoder")
        if token_embedders:
            embedder["token_embedders"] = token_embedders
        t.carry(embedder, encoder, "model.text_field_embedder", "model.encoder")
        result["encoder"] = encoder

    seq2vec = model.pop("seq2vec_encoder", None)
    if isinstance(seq2vec, dict):
        result["pooler"] = _pooler(dict(seq2vec), t)
    elif seq2vec is not None:
        result["pooler"] = seq2vec

    feedforward = model.pop("feedforward", None)
    if isinstance(feedforward, dict):
        result["feedforward"] = _feedforward(dict(feedforward), t)
    elif feedforward is not None:
        result["feedforward"] = feedforward

    has_loss = "loss" in model
    t.move(model, "loss", result, "loss", "model.loss", "model.loss")
    if no_op:
        result["mlm_weight"] = 0
        t.note(
            "trainer.type no_op",
            "model.mlm_weight 0",
            "nothing is trained: the checkpoint is exported without its masked-LM head",
        )
        mlm = True  # leave the reader alone
    else:
        if not mlm:
            result["mlm_weight"] = 0
            t.note(f"{EMBEDDER}.masked_language_modeling false", "model.mlm_weight 0", "contrastive only")
        if not has_loss and result.get("type", "declutr") == "declutr":
            result["contrastive_weight"] = 0
            t.note("model.loss (absent)", "model.contrastive_weight 0", "MLM only")
    t.carry(model, result, "model", "model")
    return result, mlm


def _pooler(seq2vec: dict, t: _Translation) -> dict:
    base = "model.seq2vec_encoder"
    kind = seq2vec.pop("type", None)
    if seq2vec.pop("embedding_dim", None) is not None:
        t.note(f"{base}.embedding_dim", "dropped", "the encoder's hidden size is passed on automatically")
    if kind == "cls_pooler":
        if seq2vec.get("cls_is_last_token") is False:
            t.drop(seq2vec, "cls_is_last_token", f"{base}.cls_is_last_token", "the cls pooler takes the first token")
        pooler = {"type": "cls"}
    elif kind in ("boe", "bag_of_embeddings") and seq2vec.get("averaged", False):
        t.drop(seq2vec, "averaged", f"{base}.averaged", "the mean pooler averages")
        pooler = {"type": "mean"}
    else:
        pooler = {"type": kind}
    t.note(f"{base}.type {kind}", f"model.pooler.type {pooler['type']}")
    t.carry(seq2vec, pooler, base, "model.pooler")
    return pooler


def _feedforward(feedforward: dict, t: _Translation) -> dict:
    base = "model.feedforward"
    if feedforward.pop("input_dim", None) is not None:
        t.note(f"{base}.input_dim", "dropped", "the pooler's output size is passed on automatically")
    layers = feedforward.pop("num_layers", None)
    if layers is not None:
        hidden = feedforward.get("hidden_dims")
        if isinstance(hidden, int):
            feedforward["hidden_dims"] = [hidden] * layers
        t.note(f"{base}.num_layers {layers}", "dropped", "hidden_dims lists one size per layer")
    activations = feedforward.get("activations")
    if isinstance(activations, dict) and set(activations) == {"type"}:
        feedforward["activations"] = activations["type"]
        t.note(f"{base}.activations", f"{base}.activations {activations['type']}")
    elif isinstance(activations, list) and all(isinstance(a, dict) and set(a) == {"type"} for a in activations):
        feedforward["activations"] = [a["type"] for a in activations]
        t.note(f"{base}.activations", f"{base}.activations {feedforward['activations']}")
    dropout = feedforward.get("dropout")
    if isinstance(dropout, list) and dropout and len(set(dropout)) == 1:
        feedforward["dropout"] = dropout[0]
        t.note(f"{base}.dropout {dropout}", f"{base}.dropout {dropout[0]}")
    return feedforward


def _trainer(trainer: dict, t: _Translation) -> dict:
    result: dict[str, Any] = {}
    optimizer = trainer.get("optimizer")
    if isinstance(optimizer, dict) and optimizer.get("type") == "huggingface_adamw":
        trainer["optimizer"] = {**optimizer, "type": "adamw"}
        t.note(
            "trainer.optimizer.type huggingface_adamw",
            "adamw",
            "the same AdamW; correct_bias false is the paper's no-bias-correction variant",
        )
    checkpointer = trainer.pop("checkpointer", None)
    if isinstance(checkpointer, dict):
        checkpointer = dict(checkpointer)
        keep = checkpointer.pop("num_serialized_models_to_keep", None)
        if keep is not None:
            result["keep_checkpoints"] = keep
            t.note(
                f"trainer.checkpointer.num_serialized_models_to_keep {keep}",
                f"trainer.keep_checkpoints {keep}",
                "-1 keeps all" if keep == -1 else None,
            )
        if checkpointer:
            result["checkpointer"] = checkpointer  # no equivalent: the validation reports it
            t.note("trainer.checkpointer", "trainer.checkpointer", f"no known equivalent of {', '.join(checkpointer)}")
    t.move(
        trainer,
        "num_gradient_accumulation_steps",
        result,
        "gradient_accumulation_steps",
        "trainer.num_gradient_accumulation_steps",
        "trainer.gradient_accumulation_steps",
    )
    scheduler = trainer.get("learning_rate_scheduler")
    if isinstance(scheduler, dict) and scheduler.get("type") == "slanted_triangular":
        scheduler = trainer["learning_rate_scheduler"] = dict(scheduler)
        base = "trainer.learning_rate_scheduler"
        for key in ("num_epochs", "num_steps_per_epoch"):
            t.drop(scheduler, key, f"{base}.{key}", "the scheduler is told the real number of steps")
        for key in ("gradual_unfreezing", "discriminative_fine_tuning"):
            if scheduler.get(key) is False:
                t.drop(scheduler, key, f"{base}.{key}", "declutr never does this")
        if "discriminative_fine_tuning" not in scheduler:
            t.drop(scheduler, "decay_factor", f"{base}.decay_factor", "only used with discriminative_fine_tuning")
    result.update(trainer)
    return result
