"""Text encoders: token ids in, contextual token vectors (and masked-LM logits) out."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, ClassVar

import torch

from declutr.core.registrable import Registrable
from declutr.data.tokenizer import check_model_name


class TextEncoder(torch.nn.Module, Registrable):
    """Maps ``input_ids``/``attention_mask`` (``[N, L]``) to token vectors ``[N, L, hidden_size]``.

    ``masked_language_modeling`` is decided by the model that owns the encoder (it knows whether
    its MLM term is on) and passed when the model builds it, so configs never set it.
    """

    kind_name = "encoder"
    default_implementation = "transformer"
    runtime_args: ClassVar[tuple[str, ...]] = ("masked_language_modeling",)

    hidden_size: int
    masked_language_modeling: bool

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The last layer's token vectors ``[N, L, hidden_size]`` (no masked-LM head)."""
        raise NotImplementedError

    def forward_masked_lm(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, selected: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass giving both the token vectors and the masked-LM logits.

        The logits are ``[N, L, vocab]``, or with ``selected`` (``BoolTensor[N, L]``, the masked
        positions) only those positions' ``[K, vocab]`` in row-major order: the loss needs no
        more, and the vocabulary projection of every other token is most of a small model's cost.
        """
        raise NotImplementedError(f"{type(self).__name__} has no masked-LM head")


def dtype_kwarg() -> str:
    """``dtype`` in transformers >= 4.56, ``torch_dtype`` before."""
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


@TextEncoder.register("transformer")
class TransformerEncoder(TextEncoder):
    """A Hugging Face transformer (any checkpoint name or local path), last hidden layer.

    Loads ``AutoModelForMaskedLM`` when the model trains with masked-LM and ``AutoModel``
    otherwise, in float32 with SDPA attention. The bare model's pooler layer (unused by declutr's
    poolers) is dropped so that distributed training sees no unused parameters.

    With ``architecture`` instead of ``model_name`` the transformer is built from scratch: a
    transformers config (``{"model_type": "bert", "hidden_size": 256, ...}``, any key of that
    model type's config class), randomly initialised from ``init_seed``. Its ``vocab_size`` must
    be the tokenizer's and its positions must hold the reader's ``max_length`` (checked by
    ``declutr config``; :func:`check_architecture`).

    # Parameters
    model_name: a Hugging Face model id or a local checkpoint directory.
    architecture: a transformers config to build an untrained transformer from (not with ``model_name``).
    init_seed: the seed of the random initialisation of an ``architecture`` (null: torch's
        generator as the run seeded it).
    gradient_checkpointing: trade compute for memory (recompute activations in the backward pass).
    trust_remote_code: allow checkpoints that ship their own modelling code (off by default).
    attn_implementation: ``sdpa`` (default), ``eager`` or another transformers attention backend.
    revision: a branch, tag or commit of a hub checkpoint.
    dropout: the dropout rate of the transformer's hidden states and attention probabilities
        (null: the checkpoint's or the architecture's own). It is written to the exported config.
    compile: run the transformer through ``torch.compile`` (dynamic shapes). Measured slower on
        CPU (see docs/performance.md), so off by default; try it on GPU.
    masked_language_modeling: injected by the model; set it only when using the encoder alone.
    """

    def __init__(
        self,
        model_name: str | None = None,
        architecture: dict[str, Any] | None = None,
        init_seed: int | None = None,
        gradient_checkpointing: bool = False,
        trust_remote_code: bool = False,
        attn_implementation: str = "sdpa",
        revision: str | None = None,
        compile: bool = False,
        dropout: float | None = None,
        masked_language_modeling: bool = False,
    ):
        super().__init__()
        from transformers import AutoModel, AutoModelForMaskedLM

        problem = source_problem(model_name, architecture)
        if problem:
            raise ValueError(problem)
        self.model_name = None if model_name is None else str(model_name)
        self.architecture = None if architecture is None else dict(architecture)
        self.init_seed = init_seed
        self.gradient_checkpointing = gradient_checkpointing
        self.trust_remote_code = trust_remote_code
        self.attn_implementation = attn_implementation
        self.revision = revision
        self.compile = compile
        if dropout is not None and not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.dropout = dropout
        self.masked_language_modeling = masked_language_modeling
        auto = AutoModelForMaskedLM if masked_language_modeling else AutoModel
        kwargs = {
            "attn_implementation": attn_implementation,
            "trust_remote_code": trust_remote_code,
            dtype_kwarg(): torch.float32,
        }
        if self.architecture is not None:
            config = with_dropout(architecture_config(self.architecture), dropout)
            with torch.random.fork_rng(devices=[]):
                if init_seed is not None:
                    torch.manual_seed(init_seed)
                self.model = auto.from_config(
                    config, attn_implementation=attn_implementation, **{dtype_kwarg(): torch.float32}
                )
        else:
            if revision is not None:
                kwargs["revision"] = revision
            local = check_model_name(self.model_name)
            try:
                with quiet_transformers():
                    if dropout is not None:
                        kwargs["config"] = with_dropout(self._pretrained_config(kwargs), dropout)
                    self.model, loading = auto.from_pretrained(self.model_name, output_loading_info=True, **kwargs)
            except OSError as error:
                where = "local directory" if local else "Hugging Face model"
                raise ValueError(f'cannot load {where} "{self.model_name}": {error}') from error
            report_loading(self.model_name, loading, masked_language_modeling)
        if not masked_language_modeling and getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None
        if gradient_checkpointing:
            enable_checkpointing(self.model)
        self.hidden_size = int(self.model.config.hidden_size)
        if compile:
            # In place (``Module.compile``): parameter names, and so checkpoints and exports, stay as they are.
            self.base_model.compile(dynamic=True)

    def _pretrained_config(self, kwargs: dict[str, Any]):
        from transformers import AutoConfig

        options = {k: kwargs[k] for k in ("trust_remote_code", "revision") if k in kwargs}
        return AutoConfig.from_pretrained(self.model_name, **options)

    @property
    def base_model(self) -> torch.nn.Module:
        """The transformer without any head (what ``AutoModel`` loads from an export)."""
        return self.model.base_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return last_hidden_state(self.base_model, input_ids, attention_mask)

    def forward_masked_lm(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, selected: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.masked_language_modeling:
            raise RuntimeError("this encoder was loaded without its masked-LM head (masked_language_modeling=False)")
        head = masked_lm_head(self.model)
        if head is not None:
            # Exactly what the masked-LM model's forward does (head of the base model's output),
            # with the head applied to the masked positions only when told which they are.
            hidden = self.forward(input_ids, attention_mask)
            return hidden, head(hidden if selected is None else hidden[selected])
        captured: list[torch.Tensor] = []

        def keep_output(module, inputs, output):
            captured.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

        # The hook takes the base model's own output, so the anchor embeddings are exactly what
        # ``forward`` (the inference path) would compute from the same input.
        handle = self.base_model.register_forward_hook(keep_output)
        try:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        finally:
            handle.remove()
        return captured[-1], (logits if selected is None else logits[selected])

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """A Hugging Face checkpoint (safetensors + config), the masked-LM head included when loaded."""
        self.model.save_pretrained(str(directory), safe_serialization=True)


def source_problem(model_name: str | None, architecture: dict[str, Any] | None) -> str | None:
    """Why an encoder config names no transformer or two (``None``: it names exactly one)."""
    if model_name and architecture is not None:
        return (
            "names both a pretrained model (model_name) and an architecture to build from scratch; remove one of them"
        )
    if not model_name and architecture is None:
        return "model_name must name a Hugging Face checkpoint or a local directory (or give an architecture)"
    return None


def architecture_config(architecture: dict[str, Any]):
    """The transformers config of an ``architecture`` object (``model_type`` plus that config's keys)."""
    from transformers import AutoConfig

    values = dict(architecture)
    model_type = values.pop("model_type", None)
    if not isinstance(model_type, str):
        raise ValueError('architecture needs "model_type" (a transformers model type, e.g. "bert")')  # noqa: TRY004 (a config value)
    try:
        config = AutoConfig.for_model(model_type)
    except ValueError:
        raise ValueError(f'architecture.model_type: "{model_type}" is not a transformers model type') from None
    unknown = sorted(key for key in values if not hasattr(config, key))
    if unknown:
        raise ValueError(f"architecture: {', '.join(unknown)} not a key of {type(config).__name__}")
    return AutoConfig.for_model(model_type, **values)


#: the config keys of dropout on hidden states and attention probabilities, across model types
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


def with_dropout(config, dropout: float | None):
    """``config`` with every dropout rate it has (``DROPOUT_KEYS``) set to ``dropout`` (unless null)."""
    if dropout is not None:
        keys = [
            key
            for key in DROPOUT_KEYS
            if isinstance(getattr(config, key, None), (int, float)) and not isinstance(getattr(config, key), bool)
        ]
        if not keys:
            raise ValueError(f"dropout: {type(config).__name__} has none of the dropout keys {', '.join(DROPOUT_KEYS)}")
        for key in keys:
            setattr(config, key, float(dropout))
    return config


#: masked-LM classes whose forward is ``<head>(base_model(...)[0])``, and the head's attribute
MASKED_LM_HEADS = {
    "BertForMaskedLM": "cls",
    "RobertaForMaskedLM": "lm_head",
    "XLMRobertaForMaskedLM": "lm_head",
    "CamembertForMaskedLM": "lm_head",
    "MPNetForMaskedLM": "lm_head",
}


@contextlib.contextmanager
def quiet_transformers():
    """transformers' own load messages (a multi-line LOAD REPORT, "This checkpoint seem corrupted"
    for a checkpoint without a masked-LM head) off; :func:`report_loading` says it in one line."""
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)


def report_loading(name: str, loading: dict, masked_language_modeling: bool) -> None:
    """One log line for the tensors a checkpoint lacked (initialised) or had in excess (ignored)."""
    missing = sorted(loading.get("missing_keys") or ())
    unexpected = sorted(loading.get("unexpected_keys") or ())
    parts = []
    if missing:
        head = masked_language_modeling and all(
            k.startswith(("lm_head.", "cls.", "generator_", "pred_")) for k in missing
        )
        what = "masked-LM head not in the checkpoint" if head else "tensors not in the checkpoint"
        parts.append(
            f"{what}: {len(missing)} tensors initialised ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
        )
    if unexpected:
        parts.append(f"unexpected tensors ignored: {len(unexpected)}")
    if parts:
        logging.getLogger("declutr").info("%s: %s", name, "; ".join(parts))


def masked_lm_head(model: torch.nn.Module) -> torch.nn.Module | None:
    """The head that maps a masked-LM model's token vectors to logits, where it is known to be
    applied on its own (``None``: run the whole model and pick the logits)."""
    name = MASKED_LM_HEADS.get(type(model).__name__)
    head = getattr(model, name, None) if name else None
    return head if isinstance(head, torch.nn.Module) else None


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Recompute activations in the backward pass (non-reentrant), with either transformers API."""
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def is_checkpointing(model: torch.nn.Module) -> bool:
    flag = getattr(type(model), "is_activation_checkpointing", None)
    return bool(model.is_activation_checkpointing if flag is not None else model.is_gradient_checkpointing)


def last_hidden_state(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``model(input_ids, attention_mask).last_hidden_state`` for a bare transformer.

    The one way declutr runs a bare transformer, used by training-time encoders and by models
    loaded back from an export alike. With SDPA attention the padding mask goes in as the 4D
    boolean mask SDPA takes (``[N, 1, 1, L]``, True = attend), which transformers passes on as
    it is: from a 2D mask it would first test ``mask.all()`` on the host to drop an all-ones
    mask, a device synchronisation in every encoder call.
    """
    if attention_mask.dim() == 2 and getattr(model.config, "_attn_implementation", None) == "sdpa":
        attention_mask = attention_mask.bool()[:, None, None, :]
    return model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
