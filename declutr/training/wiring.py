"""Problems between parts of a config that each pass on their own, found before anything loads.

``wiring_problems(config)`` is what ``declutr config`` and :class:`~declutr.training.experiment.Experiment`
add to the schema's validation: a from-scratch encoder against its tokenizer
(``architecture_problems``), keys that contradict each other (``cross_key_problems``) and the
components of a mixture of data paths (``declutr.data.mixture.mixture_problems``), each one line
naming the key paths concerned (docs/configs.md, "Keys that must agree with each other").
"""

import inspect
import os
from dataclasses import dataclass
from typing import Any

from declutr.core.errors import DeclutrError


def wiring_problems(config: dict[str, Any]) -> list[str]:
    """The problems between parts of a schema-valid config that each pass on their own:
    ``mixture_problems`` of the data paths, ``architecture_problems`` and ``cross_key_problems``."""
    from declutr.data.mixture import mixture_problems

    mixtures = [
        problem
        for key in ("train_data_path", "validation_data_path")
        if isinstance(config.get(key), list)
        for problem in mixture_problems(config[key], key)
    ]
    return mixtures + architecture_problems(config) + cross_key_problems(config)


def architecture_problems(config: dict[str, Any]) -> list[str]:
    """What does not fit between a from-scratch encoder (``model.encoder.architecture``) and the
    reader's tokenizer: a different vocabulary size, inputs longer than the model's positions
    (the tokenizer is loaded, no weights)."""
    model = config.get("model")
    encoder = model.get("encoder") if isinstance(model, dict) else None
    architecture = encoder.get("architecture") if isinstance(encoder, dict) else None
    reader = config.get("dataset_reader")
    tokenizer = reader.get("tokenizer") if isinstance(reader, dict) else None
    if architecture is None:
        return []
    from declutr.data.tokenizer import TransformerTokenizer
    from declutr.io.export import max_sequence_length
    from declutr.modules.encoders import architecture_config, source_problem

    both = source_problem(encoder.get("model_name"), architecture)
    if both:
        return [f"model.encoder: {both}"]
    if not isinstance(architecture, dict) or not isinstance(tokenizer, dict):
        return []  # the schema's own problems

    try:
        model_config = architecture_config(architecture)
        reader_tokenizer = TransformerTokenizer(tokenizer.get("model_name"), tokenizer.get("max_length"))
    except (DeclutrError, ValueError, TypeError, OSError):
        return []  # building the encoder or the reader reports it, with its key path
    problems = []
    where = f'dataset_reader.tokenizer.model_name "{tokenizer.get("model_name")}"'
    if model_config.vocab_size != reader_tokenizer.vocab_size:
        problems.append(
            f"model.encoder.architecture.vocab_size: {model_config.vocab_size}, but the tokenizer of {where} has "
            f"{reader_tokenizer.vocab_size} tokens (set vocab_size to {reader_tokenizer.vocab_size})"
        )
    positions = max_sequence_length(model_config, None)
    if reader_tokenizer.max_length > positions:
        problems.append(
            f"dataset_reader.tokenizer.max_length: {reader_tokenizer.max_length} tokens, longer than the "
            f"{positions} positions of model.encoder.architecture (max_position_embeddings "
            f"{model_config.max_position_embeddings})"
        )
    return problems


def trains(trainer: dict[str, Any] | str) -> bool:
    """Whether a ``trainer`` config trains (a ``NoOpTrainer`` only exports the model as built)."""
    from declutr.training.trainer import NoOpTrainer, Trainer

    return not issubclass(_component_class(Trainer, trainer), NoOpTrainer)


# ------------------------------------------------------------------ keys that meet at run time
@dataclass
class _Feed:
    """What the batches of one reader and loader carry, read from the config (and the
    constructors' defaults) without building anything."""

    reader: str  # the reader's key: "dataset_reader" or "validation_dataset_reader"
    named: str  # '<reader>.type "<name>"', for messages
    masking: str | None  # the key that masks the anchors ("<reader>.mlm_probability: 0.15"); None: unmasked
    masking_fix: str  # how to turn masking off
    unmasked: str  # why the anchors are not masked, when they are not
    positives: bool
    negatives: bool
    #: anchors one record gives, and the key that says so; None: not known (a plugin's)
    per_record: tuple[int, str] | None
    loader: str  # the loader's key
    batch_size: int | None  # None: not a DocumentDataLoader (a plugin's)
    drop_last: bool


def cross_key_problems(config: dict[str, Any]) -> list[str]:
    """Settings in two parts of a config that are each valid but contradict each other, and would
    otherwise only meet at the first training or validation step: the model's objective against
    what the reader's batches carry (masked anchors, positives, hard negatives), and the anchors a
    step holds against what the losses need. Each problem names both key paths. Plugin
    components (models, readers, loaders this does not know) are not checked."""
    from declutr.models import DeclutrModel, ISBERTModel, Model, SimCSEModel

    if not trains(config.get("trainer", {})):
        return []
    model = _as_dict(config.get("model"))
    model_class = _component_class(Model, config.get("model"))
    if not issubclass(model_class, (DeclutrModel, SimCSEModel, ISBERTModel)):
        return []
    feeds = [("dataset_reader", "data_loader")]
    if config.get("validation_data_path"):
        reader = "validation_dataset_reader" if config.get("validation_dataset_reader") else "dataset_reader"
        feeds.append((reader, "validation_data_loader" if config.get("validation_data_loader") else "data_loader"))
    problems: list[str] = []
    for reader, loader in dict.fromkeys(feeds):
        feed = _feed(config, reader, loader)
        if feed is not None:
            problems += _objective_problems(model_class, model, feed) + _step_problems(model_class, model, feed, config)
    return list(dict.fromkeys(problems))


def _objective_problems(model_class: type, model: dict, feed: _Feed) -> list[str]:
    """The model's terms against what the batches carry."""
    from declutr.models import DeclutrModel, SimCSEModel

    problems = []
    kind = f'model.type "{model.get("type", model_class.default_implementation)}"'
    has_mlm = issubclass(model_class, DeclutrModel) and _setting(model_class, model, "mlm_weight") > 0
    if has_mlm and feed.masking is None:
        problems.append(
            f"model.mlm_weight: {_setting(model_class, model, 'mlm_weight')} asks for the masked-LM term, but "
            f"{feed.unmasked}: the anchors carry no masked-LM labels (set model.mlm_weight to 0 for contrastive-only)"
        )
    if not issubclass(model_class, DeclutrModel) and feed.masking is not None:
        problems.append(
            f"{feed.masking} masks the anchors, but {kind} has no masked-LM term: it would train on masked "
            f"text ({feed.masking_fix})"
        )
    contrastive = issubclass(model_class, DeclutrModel) and _setting(model_class, model, "contrastive_weight") > 0
    if contrastive and not feed.positives:
        problems.append(
            f"model.contrastive_weight: {_setting(model_class, model, 'contrastive_weight')} asks for the contrastive "
            f'term, but {feed.named} gives no positives (the "declutr" reader does; set model.contrastive_weight '
            "to 0 for masked-LM only)"
        )
    loss = _as_dict(model.get("loss"))
    if loss.get("hard_negative_weight"):
        unused = None
        if not issubclass(model_class, SimCSEModel):
            unused = f"{kind} passes none to its loss"
        elif not feed.negatives:
            unused = f'{feed.named} gives none (only "simcse_supervised" does)'
        if unused:
            problems.append(
                f"model.loss.hard_negative_weight: {loss['hard_negative_weight']} weighs hard negatives, but "
                f"{unused}: set it to 0"
            )
    return problems


def _step_problems(model_class: type, model: dict, feed: _Feed, config: dict) -> list[str]:
    """The anchors of a step against the losses: the contrastive loss needs two (the other
    anchors are its negatives), the infomax loss two per process, ``mlm_mean_groups`` a count it
    divides (also in an epoch's last, incomplete step)."""
    from declutr.models import DeclutrModel, ISBERTModel, SimCSEModel

    if feed.batch_size is None or feed.per_record is None:
        return []
    (per_record, per_record_key), batch = feed.per_record, feed.batch_size
    processes = _processes(config)
    step = f"{batch} records x {per_record} ({per_record_key}) x {processes} process(es)"
    problems = []
    anchors = processes * batch * per_record
    contrastive = issubclass(model_class, SimCSEModel) or (
        issubclass(model_class, DeclutrModel) and _setting(model_class, model, "contrastive_weight") > 0
    )
    if contrastive and anchors < 2 and not (feed.negatives and issubclass(model_class, SimCSEModel)):
        problems.append(
            f"{feed.loader}.batch_size: {step} = 1 anchor a step, but the contrastive loss needs 2 or more "
            "(the other anchors are its negatives; with one its loss is 0 and nothing trains): raise it"
        )
    if issubclass(model_class, ISBERTModel) and batch * per_record < 2:
        problems.append(
            f"{feed.loader}.batch_size: {batch} records x {per_record} ({per_record_key}) = 1 sentence a step and "
            "process, but the infomax loss needs 2 or more (the other sentences are its negatives): raise it"
        )
    groups = _setting(model_class, model, "mlm_mean_groups") if issubclass(model_class, DeclutrModel) else None
    if groups is None or model.get("mlm_global_mean") or _setting(model_class, model, "mlm_weight") <= 0:
        return problems
    if anchors % groups:
        problems.append(
            f"model.mlm_mean_groups: {groups} equal groups of the step's anchors, but a step has {anchors} "
            f"({step}): choose a divisor of {anchors}"
        )
    elif not feed.drop_last:
        uneven = [processes * last * per_record for last in range(1, batch) if processes * last * per_record % groups]
        if uneven:
            problems.append(
                f"model.mlm_mean_groups: {groups} equal groups of the step's anchors, but the last, incomplete "
                f"step of an epoch can have {uneven[0]} ({feed.loader}.drop_last is false): set "
                f"{feed.loader}.drop_last to true"
            )
    return problems


def _feed(config: dict, reader_key: str, loader_key: str) -> _Feed | None:
    """What ``reader_key`` and ``loader_key`` give (None: a reader or sampler this does not know)."""
    from declutr.data import DataLoader, DatasetReader
    from declutr.data.loader import DocumentDataLoader
    from declutr.data.readers import (
        NLITripletReader,
        SentenceReader,
        SimCSEUnsupervisedReader,
        SpanReader,
        WindowReader,
    )
    from declutr.data.samplers import DeclutrSpanSampler, SameTextSampler, SpanSampler, WholeTextSampler

    reader = _as_dict(config.get(reader_key))
    cls = _component_class(DatasetReader, config.get(reader_key))
    name = reader.get("type", DatasetReader.default_implementation)
    named = f'{reader_key}.type "{name}"'
    masking, fix, negatives = None, f"set {reader_key}.mlm_probability to null", False
    unmasked = f'{named} does not mask (the "declutr" and "windows" readers do)'
    sampler_class, sampler = {SentenceReader: WholeTextSampler, SimCSEUnsupervisedReader: SameTextSampler}.get(cls), {}
    if cls is WindowReader:
        masking, fix = f'{reader_key}.type: "{name}"', 'use the "sentences" reader'
        positives, per_record = False, (1, named)
    elif cls is NLITripletReader:
        positives, negatives, per_record = True, True, (1, named)
    elif cls is SpanReader or sampler_class is not None:
        if cls is SpanReader:
            probability = _setting(cls, reader, "mlm_probability")
            masking = None if probability is None else f"{reader_key}.mlm_probability: {probability}"
            unmasked = f"{reader_key}.mlm_probability is null"
            sampler_class = _component_class(SpanSampler, reader.get("span_sampler"))
            sampler = _as_dict(reader.get("span_sampler"))
            named = f'{reader_key}.span_sampler.type "{sampler.get("type", SpanSampler.default_implementation)}"'
        if issubclass(sampler_class, DeclutrSpanSampler):
            per_record = (_setting(sampler_class, sampler, "num_anchors"), f"{reader_key}.span_sampler.num_anchors")
            positives = _setting(sampler_class, sampler, "num_positives") > 0
        elif sampler_class in (WholeTextSampler, SameTextSampler):  # fixed counts, class attributes
            per_record, positives = (sampler_class.num_anchors, named), sampler_class.num_positives > 0
        else:
            return None
    else:
        return None
    loader = _as_dict(config.get(loader_key))
    loader_class = _component_class(DataLoader, config.get(loader_key))
    known = issubclass(loader_class, DocumentDataLoader)
    return _Feed(
        reader_key,
        f'{reader_key}.type "{name}"',
        masking,
        fix,
        unmasked,
        positives,
        negatives,
        per_record,
        loader_key,
        _setting(loader_class, loader, "batch_size") if known else None,
        bool(_setting(loader_class, loader, "drop_last")) if known else False,
    )


def _component_class(kind: type, config: dict[str, Any] | str | None) -> type:
    """The class a component config names (its ``type``, or the kind's default)."""
    name = config if isinstance(config, str) else _as_dict(config).get("type") or kind.default_implementation
    return kind.resolve(name)[0]


def _as_dict(config: Any) -> dict[str, Any]:
    return config if isinstance(config, dict) else {}


def _setting(cls: type, config: dict[str, Any], key: str) -> Any:
    """``config[key]``, or the default of the first constructor in ``cls``'s MRO that takes ``key``."""
    if key in config:
        return config[key]
    for base in cls.__mro__:
        parameter = inspect.signature(base.__init__).parameters.get(key)
        if parameter is not None:
            return parameter.default
    return None


def _processes(config: dict[str, Any]) -> int:
    """The training processes: ``distributed.cuda_devices``, or torchrun's ``WORLD_SIZE``."""
    distributed = config.get("distributed")
    if isinstance(distributed, dict) and distributed.get("cuda_devices"):
        return len(distributed["cuda_devices"])
    return int(os.environ.get("WORLD_SIZE", "1"))
