"""An experiment: the one place that turns a config into a run's objects.

    {
      "dataset_reader": {...}, "train_data_path": "...", "validation_data_path": "...",
      "data_loader": {...}, "model": {...}, "trainer": {...},
      "distributed": {"cuda_devices": [0, 1]}, "random_seed": 13
    }

:meth:`Experiment.from_file` evaluates a file (JSONnet, ext vars, the AllenNLP-1.1 translation,
``--overrides``); :class:`Experiment` validates the config once and builds reader -> loaders ->
model -> trainer for one process (``rank``, ``world_size``, ``device`` are arguments, never
config edits). ``declutr train`` is ``train_model(Experiment.from_file(...), dir)``;
``training/run.py`` only launches processes and manages the run directory.
"""

import os
from typing import Any

from declutr.core.errors import ConfigurationError, DeclutrError
from declutr.core.plugins import import_components
from declutr.training.wiring import trains, wiring_problems

#: values the builder passes to every constructor that names them (docs/architecture.md); the
#: run-time arguments of lazily built kinds are their ``runtime_args``
INJECTED = ("tokenizer", "serialization_dir")


def default_backend(cuda: bool) -> str:
    """The process-group backend unless the config names one: ``nccl`` on CUDA, ``gloo`` on CPU."""
    return "nccl" if cuda else "gloo"


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
        self.backend = backend or default_backend(cuda_devices[0] >= 0)
        self.backend_is_default = backend is None
        self.master_address = master_address
        self.master_port = master_port


def experiment_schema() -> type:
    """The class whose constructor is the schema of an experiment file: its keys, types and
    defaults. The components are ``Lazy``, so building it is cheap (no tokenizer, no weights)."""
    from declutr.core.construct import Lazy
    from declutr.data import DataLoader, DatasetReader
    from declutr.data.mixture import MixtureComponent
    from declutr.models import Model
    from declutr.training.trainer import Trainer

    class ExperimentSchema:
        def __init__(
            self,
            dataset_reader: Lazy[DatasetReader],
            model: Lazy[Model],
            trainer: Lazy[Trainer],
            train_data_path: str | list[MixtureComponent] | None = None,
            validation_data_path: str | list[MixtureComponent] | None = None,
            data_loader: Lazy[DataLoader] | None = None,
            validation_dataset_reader: Lazy[DatasetReader] | None = None,
            validation_data_loader: Lazy[DataLoader] | None = None,
            distributed: DistributedConfig | None = None,
            random_seed: int = 13,
        ):
            self.__dict__.update(locals())
            del self.__dict__["self"]

    return ExperimentSchema


def validate_experiment(config: dict[str, Any]) -> None:
    """Raise ``ConfigurationError`` listing every problem in ``config`` (builds nothing)."""
    from declutr.core.construct import validate

    import_components()
    problems = validate(experiment_schema(), _top_level(config), extras=dict.fromkeys(INJECTED))
    problems = problems or wiring_problems(config)
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
    """``(config, messages)`` of :meth:`Experiment.from_file`: the file evaluated, translated,
    overridden and validated."""
    experiment = Experiment.from_file(config_file, overrides, ext_vars)
    return experiment.config, experiment.messages


class Experiment:
    """A validated experiment config and the wiring of its run.

    ``Experiment(config)`` validates the whole config (every problem at once) and builds its top
    level (``random_seed``, ``distributed``; the components stay ``Lazy``).
    ``Experiment.from_file(path, overrides, ext_vars)`` applies exactly the checks of
    ``declutr train``; ``experiment.build(run_dir)`` returns the trainer of one process without
    training; ``declutr.training.run.train_model(experiment, run_dir)`` trains as ``declutr train``
    does (one process, spawned processes for ``distributed``, or under ``torchrun``).
    """

    def __init__(self, config: dict[str, Any], messages: list[str] | tuple[str, ...] = ()):
        from declutr.core.construct import build

        import_components()
        self.config = config
        self.messages = list(messages)
        #: the top level built (an ``ExperimentSchema``); its components stay ``Lazy`` until
        #: :meth:`build` constructs them with the run-time values (``INJECTED`` among them)
        self.parts = build(experiment_schema(), _top_level(config), deferred=INJECTED)
        problems = wiring_problems(config)
        if problems:
            raise ConfigurationError(problems)

    def __reduce__(self):
        """Pickled as its config (a spawned process validates and builds the top level again)."""
        return type(self), (self.config, self.messages)

    @classmethod
    def from_file(
        cls,
        config_file: str | os.PathLike,
        overrides: str | dict | None = None,
        ext_vars: dict[str, str] | tuple[str, ...] | list[str] | None = None,
    ) -> "Experiment":
        """The experiment of a file: evaluated, translated, overridden and validated.

        A file in the reference implementation's schema (AllenNLP 1.1; docs/configs.md) is
        translated to declutr's first (``messages`` says what was translated); ``overrides`` are in
        declutr's schema and merged after the translation. Every problem is reported at once as a
        ``ConfigurationError``, each with its key path and where it was written when that is
        certain. ``ext_vars``: a dict, or ``KEY=VALUE`` strings as ``--ext-var`` takes them.
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
            return cls(config, messages)
        except ConfigurationError as error:
            located = [locate(problem, config_file, overridden) for problem in error.problems]
            raise ConfigurationError(located) from error.__cause__

    @property
    def random_seed(self) -> int:
        return self.parts.random_seed

    @property
    def distributed(self) -> DistributedConfig | None:
        return self.parts.distributed

    @property
    def cuda_device(self) -> int | None:
        """``trainer.cuda_device`` (null: automatic; -1: CPU); a spawned process's own device wins."""
        trainer = self.parts.trainer.config
        return trainer.get("cuda_device") if isinstance(trainer, dict) else None

    @property
    def trains(self) -> bool:
        """Whether the trainer trains (a ``NoOpTrainer`` only exports the model as built)."""
        return trains(self.parts.trainer.config)

    def build_data(self, serialization_dir: str | os.PathLike, rank: int = 0, world_size: int = 1):
        """``(reader, train_loader, validation_loader)`` of one process, without the model: the
        readers (hence the tokenizer) and the data loaders, whose construction builds every corpus
        index the run uses. A loader is None without its data path.

        Data paths are checked before the tokenizer loads."""
        from declutr.core.construct import Lazy, build
        from declutr.data import DataLoader

        parts = self.parts
        if parts.train_data_path is None and self.trains:
            raise DeclutrError(
                'train_data_path: not set (give it in the config or with --overrides \'{"train_data_path": "..."}\')'
            )
        check_data_paths(parts)
        run_dir = {"serialization_dir": str(serialization_dir)}
        reader = parts.dataset_reader.construct(**run_dir)

        def loader(lazy, reader, path):
            lazy = lazy or Lazy(lambda **kw: build(DataLoader, {}, "data_loader", kw))
            return lazy.construct(
                reader=reader, data_path=path, seed=self.random_seed, rank=rank, world_size=world_size, **run_dir
            )

        train_loader = loader(parts.data_loader, reader, parts.train_data_path) if parts.train_data_path else None
        validation_loader = None
        if parts.validation_data_path:
            validation_reader = parts.validation_dataset_reader
            validation_loader = loader(
                parts.validation_data_loader or parts.data_loader,
                validation_reader.construct(**run_dir) if validation_reader else reader,
                parts.validation_data_path,
            )
        return reader, train_loader, validation_loader

    def build(
        self,
        serialization_dir: str | os.PathLike,
        rank: int = 0,
        world_size: int = 1,
        device: int | None = None,
    ):
        """Build reader and data loaders (:meth:`build_data`), model and trainer (in this order)
        for one process.

        ``device``: a CUDA index or -1 for CPU, overriding ``trainer.cuda_device`` (each spawned
        process passes its own). Data paths are checked before the tokenizer or any weights load.
        """
        reader, train_loader, validation_loader = self.build_data(serialization_dir, rank, world_size)
        run_dir = {"serialization_dir": str(serialization_dir)}
        model = self.parts.model.construct(tokenizer=reader.tokenizer, **run_dir)
        return self.parts.trainer.construct(
            model=model,
            data_loader=train_loader,
            validation_data_loader=validation_loader,
            rank=rank,
            world_size=world_size,
            device=device,
            **run_dir,
        )


def check_data_paths(parts: Any) -> None:
    """Every data path (every component's of a mixture but those of weight 0, which are not read)
    names existing files (a file, a folder of data files or a glob), a saved Hugging Face dataset
    or a Hub dataset (``hf:NAME``, looked up when read); the first that does not is one line with
    its key path."""
    from declutr.data.sources import check_data_path

    for key in ("train_data_path", "validation_data_path"):
        value = getattr(parts, key)
        paths = (
            [(key, value)]
            if isinstance(value, str)
            else [(f"{key}[{i}].path", c.path) for i, c in enumerate(value or []) if c.weight > 0]
        )
        for where, path in paths:
            try:
                check_data_path(path)
            except DeclutrError as error:
                raise DeclutrError(f"{where}: {error}") from None
