"""The top-level keys of an experiment file, as a typed signature the builder validates.

    {
      "dataset_reader": {...}, "train_data_path": "...", "validation_data_path": "...",
      "data_loader": {...}, "model": {...}, "trainer": {...},
      "distributed": {"cuda_devices": [0, 1]}, "random_seed": 13
    }
"""


from typing import Any

COMPONENT_PACKAGES = ("declutr.data", "declutr.modules", "declutr.losses", "declutr.models", "declutr.training")

#: values the builder passes to every constructor that names them (docs/architecture.md); the
#: run-time arguments of lazily built kinds are their ``runtime_args``
INJECTED = ("tokenizer", "serialization_dir")


def import_components() -> None:
    """Import every built-in component package so all names register."""
    import importlib.util

    for name in COMPONENT_PACKAGES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


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
    config = {k: v for k, v in config.items() if k not in ("data_loader", "validation_data_loader") or v is not None}
    problems = validate(experiment_signature(), config, extras=dict.fromkeys(INJECTED))
    if problems:
        raise ConfigurationError(problems)
