"""An experiment: the one place that turns a config into a run's objects.

    {
      "dataset_reader": {...}, "train_data_path": "...", "validation_data_path": "...",
      "data_loader": {...}, "model": {...}, "trainer": {...},
      "distributed": {"cuda_devices": [0, 1]}, "random_seed": 13
    }

:func:`resolve_config` evaluates a file (JSONnet, ext vars, the AllenNLP-1.1 translation,
``--overrides``) and validates it; :class:`Experiment` holds the validated config and builds
reader -> model -> loaders -> trainer for one process (``rank``, ``world_size``, ``device`` are
arguments, never config edits). ``declutr train`` is ``Experiment.from_file(...).train(dir)``;
``training/run.py`` only launches processes and manages the run directory.
"""

import os
from pathlib import Path
from typing import Any

from declutr.core.errors import ConfigurationError, DeclutrError
from declutr.core.plugins import import_components

#: values the builder passes to every constructor that names them (docs/architecture.md); the
#: run-time arguments of lazily built kinds are their ``runtime_args``
INJECTED = ("tokenizer", "serialization_dir")


class DistributedConfig:
    """Several processes, one per device: ``cuda_devices`` lists CUDA ids, or ``-1`` once per CPU process.

    # Parameters
    cuda_devices: one process per entry (``[0, 1, 2, 3]``; ``[-1, -1]`` = two CPU processes).
    backend: ``nccl`` on CUDA, ``gloo`` on CPU by default.
    master_address, master_port: the rendezvous of the spawned processes.
    """

    def __init__(
        self,
        cuda_devices: list[int],
        backend: str | None = None,
        master_address: str = "127.0.0.1",
        master_port: int = 29500,
    ):
        if not cuda_devices:
            raise ValueError("cuda_devices must list at least one device")
        if any(d < 0 for d in cuda_devices) and any(d >= 0 for d in cuda_devices):
            raise ValueError("cuda_devices cannot mix CPU (-1) and CUDA devices")
        self.cuda_devices = list(cuda_devices)
        self.backend = backend or ("gloo" if cuda_devices[0] < 0 else "nccl")
        self.master_address = master_address
        self.master_port = master_port


def experiment_signature():
    """The class whose constructor is the schema of an experiment file."""
    from declutr.core.construct import Lazy
    from declutr.data import DataLoader, DatasetReader
    from declutr.models import Model
    from declutr.training.trainer import Trainer

    class Experiment:
        def __init__(
            self,
            dataset_reader: DatasetReader,
            model: Lazy[Model],
            trainer: Lazy[Trainer],
            train_data_path: str | None = None,
            validation_data_path: str | None = None,
            data_loader: Lazy[DataLoader] | None = None,
            validation_dataset_reader: DatasetReader | None = None,
            validation_data_loader: Lazy[DataLoader] | None = None,
            distributed: DistributedConfig | None = None,
            random_seed: int = 13,
        ):
            self.__dict__.update(locals())
            del self.__dict__["self"]

    return Experiment


def validate_experiment(config: dict[str, Any]) -> None:
    """Raise ``ConfigurationError`` listing every problem in ``config`` (builds nothing)."""
    from declutr.core.construct import validate
    from declutr.core.errors import ConfigurationError

    import_components()
    problems = validate(experiment_signature(), _top_level(config), extras=dict.fromkeys(INJECTED))
    if problems:
        raise ConfigurationError(problems)


def _top_level(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without null loaders (a null ``data_loader`` means the default one)."""
    return {k: v for k, v in config.items() if k not in ("data_loader", "validation_data_loader") or v is not None}


def resolve_config(
    config_file: str | os.PathLike,
    overrides: str | dict | None = None,
    ext_vars: dict[str, str] | tuple[str, ...] | list[str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """``(config, messages)``: an experiment file evaluated, translated, overridden and validated.

    A file in the reference implementation's schema (AllenNLP 1.1; docs/configs.md) is translated
    to declutr's first (``messages`` says what was translated); ``overrides`` are in declutr's
    schema and merged after the translation. Every problem is reported at once as a
    ``ConfigurationError``, each with its key path and where it was written when that is certain.
    ``ext_vars``: a dict, or ``KEY=VALUE`` strings as ``--ext-var`` takes them.
    """
    from declutr.core.config import evaluate_file, locate, merge, parse_ext_vars, parse_overrides
    from declutr.training.legacy import is_reference_config, translate

    variables = dict(ext_vars) if isinstance(ext_vars, dict) else parse_ext_vars(ext_vars or ())
    config = evaluate_file(config_file, variables)
    messages: list[str] = []
    if is_reference_config(config):
        config, translated = translate(config)
        messages = [f"{config_file}: the reference's AllenNLP 1.1 schema; translated to declutr's:"]
        messages += [f"translated: {message}" for message in translated]
    overridden = parse_overrides(overrides, variables)
    config = merge(config, overridden)
    try:
        validate_experiment(config)
    except ConfigurationError as error:
        raise ConfigurationError([locate(problem, config_file, overridden) for problem in error.problems]) from None
    return config, messages


class Experiment:
    """A validated experiment config and the wiring of its run.

    ``Experiment.from_file(path, overrides, ext_vars)`` applies exactly the checks of
    ``declutr train``; ``experiment.train(run_dir)`` trains as ``declutr train`` does (one process,
    spawned processes for ``distributed``, or under ``torchrun``); ``experiment.build(run_dir)``
    returns the trainer of one process without training.
    """

    def __init__(self, config: dict[str, Any], messages: list[str] | tuple[str, ...] = ()):
        validate_experiment(config)
        self.config = config
        self.messages = list(messages)
        self.random_seed = int(config.get("random_seed", 13))
        self.distributed = self._distributed()

    @classmethod
    def from_file(
        cls,
        config_file: str | os.PathLike,
        overrides: str | dict | None = None,
        ext_vars: dict[str, str] | tuple[str, ...] | list[str] | None = None,
    ) -> "Experiment":
        return cls(*resolve_config(config_file, overrides, ext_vars))

    def _distributed(self) -> DistributedConfig | None:
        from declutr.core.construct import build

        settings = self.config.get("distributed")
        return None if not settings else build(DistributedConfig, settings, "distributed")

    @property
    def trains(self) -> bool:
        """Whether the trainer trains (the ``no_op`` trainer only exports the model)."""
        return (self.config.get("trainer") or {}).get("type") != "no_op"

    def build(
        self,
        serialization_dir: str | os.PathLike,
        rank: int = 0,
        world_size: int = 1,
        device: int | None = None,
    ):
        """Build reader, model, data loaders and trainer (in this order) for one process.

        ``device``: a CUDA index or -1 for CPU, overriding ``trainer.cuda_device`` (each spawned
        process passes its own). Data paths are checked before any weights load.
        """
        from declutr.core.construct import Lazy, build
        from declutr.data import DataLoader

        import_components()
        parts = build(
            experiment_signature(), _top_level(self.config), extras={"serialization_dir": str(serialization_dir)}
        )
        if parts.train_data_path is None and self.trains:
            raise DeclutrError(
                'train_data_path: not set (give it in the config or with --overrides \'{"train_data_path": "..."}\')'
            )
        check_data_paths(parts)
        reader = parts.dataset_reader
        model = parts.model.construct(tokenizer=reader.tokenizer)

        def loader(lazy, reader, path):
            lazy = lazy or Lazy(lambda **kw: build(DataLoader, {}, "data_loader", kw))
            return lazy.construct(
                reader=reader, data_path=path, seed=self.random_seed, rank=rank, world_size=world_size
            )

        train_loader = loader(parts.data_loader, reader, parts.train_data_path) if parts.train_data_path else None
        validation_loader = None
        if parts.validation_data_path:
            validation_loader = loader(
                parts.validation_data_loader or parts.data_loader,
                parts.validation_dataset_reader or reader,
                parts.validation_data_path,
            )
        return parts.trainer.construct(
            model=model,
            data_loader=train_loader,
            validation_data_loader=validation_loader,
            serialization_dir=str(serialization_dir),
            rank=rank,
            world_size=world_size,
            device=device,
        )

    def train(self, serialization_dir: str | os.PathLike, recover: bool = False, force: bool = False) -> dict | None:
        """Train into the run directory ``serialization_dir`` (``declutr train``); the final metrics."""
        from declutr.training.run import train_model

        return train_model(self, Path(serialization_dir), recover=recover, force=force)


def check_data_paths(parts: Any) -> None:
    """Every data path names existing files (a file, a folder of data files or a glob)."""
    from declutr.data.sources import expand_paths

    for key in ("train_data_path", "validation_data_path"):
        path = getattr(parts, key)
        if path:
            try:
                expand_paths(path)
            except DeclutrError as error:
                raise DeclutrError(f"{key}: {error}") from None
