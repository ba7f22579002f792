"""Linear interpolation between a trained model and the model it started from (``declutr merge``).

``merged = alpha * trained + (1 - alpha) * start`` over every floating-point tensor of the
transformer; integer buffers (position ids) are copied from the trained model. Both models are
loaded with transformers (the trained export with its own architecture, the start model with
``AutoModel``), so a plain Hugging Face start checkpoint matches the export's transformer whatever
prefix its weight names carry (``bert.``, ``roberta.``) and whatever head it has or lacks. What
only the trained model has (a masked-LM head, a projection head, its pooling) is kept from it.

The output is a full export, the folder ``declutr train`` writes (``declutr.io.export``), plus
``merge.json``::

    {"format_version": 1, "trained": "runs/x/model", "start": "org/model", "alpha": 0.5,
     "interpolated_tensors": 197, "copied_buffers": ["embeddings.position_ids"],
     "kept_from_trained": ["lm_head.bias", ...], "ignored_from_start": ["pooler.dense.weight", ...]}

It is written under a temporary name and renamed into place; the trained export, its run
directory and checkpoints and the start model are only read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from declutr.core.atomic import staged_directory
from declutr.core.errors import DeclutrError, first_line
from declutr.modules.encoders import dtype_kwarg, quiet_transformers

logger = logging.getLogger(__name__)

MERGE_RECORD = "merge.json"
FORMAT_VERSION = 1
#: files of a checkpoint's weights and configuration, written anew for the merged model
_WEIGHT_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class MergeError(DeclutrError):
    """The two models cannot be interpolated (a tensor differs in name or shape), or the paths are unsafe."""


def resolve_trained(trained: str | os.PathLike) -> tuple[Path, Path | None]:
    """``(export folder, run directory or None)`` for a run directory or an export folder.

    An export folder inside a run directory (``RUN/best_model``) gives that run directory too."""
    path = Path(trained).expanduser()
    if not path.is_dir():
        raise DeclutrError(f"{path} is not a folder (give a run directory or an exported model)")
    if (path / "model" / "config.json").is_file():
        return path / "model", path
    if not (path / "config.json").is_file():
        raise DeclutrError(f"{path} is neither a run directory (no model/ inside) nor a model folder (no config.json)")
    parent = path.resolve().parent
    return path, parent if _experiment_config(parent) is not None else None


def _experiment_config(run_dir: Path) -> dict | None:
    """The run's resolved experiment config (``config.json``, overrides applied), if it is one."""
    path = run_dir / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and isinstance(config.get("model"), dict) else None


def start_from_run(trained: str | os.PathLike) -> str:
    """The model a run started from: ``model.encoder.model_name`` of its ``config.json``."""
    export, run_dir = resolve_trained(trained)
    if run_dir is None:
        raise DeclutrError(f"{export} is not in a run directory, so its start model is unknown; give --start MODEL")
    config = _experiment_config(run_dir) or {}
    encoder = config.get("model", {}).get("encoder")
    name = encoder.get("model_name") if isinstance(encoder, dict) else None
    if not isinstance(name, str) or not name:
        raise DeclutrError(f"{run_dir / 'config.json'} has no model.encoder.model_name; give --start MODEL")
    return name


def _transformer_folder(model: str) -> str:
    """A run directory's ``model/``, a sentence-transformers folder's Transformer module, else ``model``."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return model
    if (path / "model" / "config.json").is_file():
        return str(path / "model")
    modules = path / "modules.json"
    if modules.is_file() and not (path / "config.json").is_file():
        for module in json.loads(modules.read_text(encoding="utf-8")):
            if module.get("type", "").endswith(".Transformer"):
                return str(path / module.get("path", ""))
    return str(path)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' load reports and progress bars off (the merge says what it matched in one place);
    also while saving, which shows a progress bar too."""
    from transformers.utils import logging as transformers_logging

    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        with quiet_transformers():
            yield
    finally:
        if bars:
            transformers_logging.enable_progress_bar()


def _load(
    auto: Any, source: str, what: str, revision: str | None = None, where: str = ""
) -> tuple[torch.nn.Module, set[str]]:
    """``(model in eval mode, names of tensors the checkpoint lacked)``, float32."""
    kwargs = {dtype_kwarg(): torch.float32, **({"revision": revision} if revision else {})}
    try:
        with quiet_loading():
            model, loading = auto.from_pretrained(source, output_loading_info=True, **kwargs)
    except (OSError, ValueError) as error:
        raise DeclutrError(f"cannot load the {what} model {source}{where}: {first_line(error)}") from None
    return model.eval(), set(loading.get("missing_keys") or ())


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "scalar"


class Interpolation:
    """A trained model and its start model, loaded and matched once; ``state_dict(alpha)`` and
    ``save(alpha, output)`` for any ``alpha`` (the trained model's weight).

    # Parameters
    trained : a run directory (its ``model/`` export) or an export folder.
    start : the start model (a Hugging Face name, a checkpoint folder, an export or a run
        directory); default: the run's ``model.encoder.model_name``.
    revision : a branch, tag or commit of a hub start model (default: the run's, when read from it).

    Raises ``MergeError`` naming the first tensor of the trained transformer that the start model
    lacks or holds with another shape.
    """

    def __init__(self, trained: str | os.PathLike, start: str | None = None, revision: str | None = None):
        from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

        self.export, self.run_dir = resolve_trained(trained)
        where = ""
        if start is None:
            start = start_from_run(trained)
            where = f" (model.encoder.model_name of {self.run_dir / 'config.json'}; give --start MODEL)"
            if revision is None and self.run_dir is not None:
                encoder = (_experiment_config(self.run_dir) or {}).get("model", {}).get("encoder", {})
                revision = encoder.get("revision") if isinstance(encoder, dict) else None
        self.start = str(start)
        architectures = AutoConfig.from_pretrained(str(self.export)).architectures or []
        masked_lm = any(name.endswith("ForMaskedLM") for name in architectures)
        self.model, trained_missing = _load(
            AutoModelForMaskedLM if masked_lm else AutoModel, str(self.export), "trained"
        )
        self.base = self.model.base_model
        prefix = f"{self.model.base_model_prefix}." if self.base is not self.model else ""
        trained_missing = {name.removeprefix(prefix) for name in trained_missing}
        pooler = getattr(self.base, "pooler", None)
        if pooler is not None and {f"pooler.{n}" for n, _ in pooler.named_parameters()} <= trained_missing:
            self.base.pooler = None  # exports drop the unused pooler layer; AutoModel re-creates it at random
        start_model, start_missing = _load(AutoModel, _transformer_folder(self.start), "start", revision, where)
        self.trained_state = {name: tensor.detach().clone() for name, tensor in self.base.state_dict().items()}
        start_state = start_model.state_dict()
        for name, tensor in self.trained_state.items():
            if name in trained_missing:
                raise MergeError(f"{self.export}: the checkpoint lacks {name}; it is not a complete export")
            other = start_state.get(name)
            if other is None or name in start_missing:
                raise MergeError(
                    f"cannot merge: {name} ({_shape(tensor)}) of the trained model is not in the start model {self.start}"
                )
            if other.shape != tensor.shape:
                raise MergeError(
                    f"cannot merge: {name} is {_shape(tensor)} in the trained model but {_shape(other)} "
                    f"in the start model {self.start}"
                )
        self.start_state = {name: start_state[name].detach().clone() for name in self.trained_state}
        self.interpolated = [name for name, tensor in self.trained_state.items() if tensor.is_floating_point()]
        self.copied = [name for name in self.trained_state if name not in self.interpolated]
        self.ignored_from_start = sorted(set(start_state) - set(self.trained_state) - start_missing)
        self.kept_from_trained = self._trained_only(prefix)
        self.projection_head = (self.export / "declutr_pooling.safetensors").is_file()
        del start_model, start_state

    def _trained_only(self, prefix: str) -> list[str]:
        """Tensors of the trained model outside its transformer (a masked-LM head), tied ones left out."""
        if not prefix:
            return []
        shared = {tensor.data_ptr() for tensor in self.base.state_dict().values()}
        kept = []
        for name, tensor in self.model.state_dict().items():
            if not name.startswith(prefix) and tensor.data_ptr() not in shared:
                shared.add(tensor.data_ptr())
                kept.append(name)
        return kept

    def state_dict(self, alpha: float) -> dict[str, torch.Tensor]:
        """The merged transformer's tensors (names as ``AutoModel`` has them)."""
        merged = {}
        for name, trained in self.trained_state.items():
            if not trained.is_floating_point():
                merged[name] = trained.clone()
                continue
            start = self.start_state[name]
            value = trained.float().mul(alpha).add_(start.float(), alpha=1.0 - alpha)
            merged[name] = value.to(trained.dtype)
        return merged

    def summary(self) -> list[str]:
        """What was merged, copied, kept and ignored, one line each."""
        lines = [
            f"interpolated {len(self.interpolated)} floating-point tensors of the transformer"
            + (f"; copied {len(self.copied)} integer buffers from the trained model" if self.copied else "")
        ]
        if self.kept_from_trained:
            lines.append(
                f"kept from the trained model (the start model has no such part): {_listing(self.kept_from_trained)}"
            )
        if self.projection_head:
            lines.append("kept from the trained model: its projection head (declutr_pooling.safetensors)")
        if self.ignored_from_start:
            lines.append(f"not in the trained model, left out: {_listing(self.ignored_from_start)} of the start model")
        return lines

    def record(self, alpha: float, **extra: Any) -> dict[str, Any]:
        start = Path(self.start).expanduser()
        return {
            "format_version": FORMAT_VERSION,
            "trained": str(self.export.resolve()),
            "start": str(start.resolve()) if start.is_dir() else self.start,
            "alpha": alpha,
            "interpolated_tensors": len(self.interpolated),
            "copied_buffers": self.copied,
            "kept_from_trained": self.kept_from_trained
            + (["declutr_pooling.safetensors"] if self.projection_head else []),
            "ignored_from_start": self.ignored_from_start,
            **extra,
        }

    def save(self, alpha: float, output: str | os.PathLike, replace: bool = False, **extra: Any) -> Path:
        """Write the model merged at ``alpha`` to ``output`` as a full export (plus ``merge.json``,
        with ``extra`` added to it); ``replace`` allows ``output`` to exist (see :func:`check_output`)."""
        output = check_output(output, self.export, self.run_dir, self.start, replace=replace)
        self.base.load_state_dict(self.state_dict(alpha), strict=True)
        try:
            with staged_directory(output) as staging:
                for item in self.export.iterdir():
                    if item.name in (*_WEIGHT_FILES, MERGE_RECORD) or item.name.startswith(
                        ("model-", "pytorch_model-")
                    ):
                        continue
                    if item.is_dir():
                        shutil.copytree(item, staging / item.name)
                    else:
                        shutil.copy2(item, staging / item.name)
                with quiet_loading():
                    self.model.save_pretrained(str(staging), safe_serialization=True)
                record = json.dumps(self.record(alpha, **extra), indent=2) + "\n"
                (staging / MERGE_RECORD).write_text(record, encoding="utf-8")
        finally:
            self.base.load_state_dict(self.trained_state, strict=True)
        return output


def check_output(
    output: str | os.PathLike, export: Path, run_dir: Path | None, start: str, replace: bool = False
) -> Path:
    """``output`` as a path; refused (``MergeError``) where writing it would replace an input (the
    export, its run directory, the run's checkpoints, a local start model) or enter one other than
    the run directory, or where it exists, is not empty and ``replace`` is false."""
    output = Path(output).expanduser()
    target = output.resolve()
    inputs = [run_dir.resolve(), run_dir.resolve() / "checkpoints"] if run_dir is not None else []
    inputs.append(export.resolve())
    if Path(start).expanduser().is_dir():
        inputs.append(Path(start).expanduser().resolve())
    for path in inputs:
        replaced = target == path or target in path.parents
        entered = path in target.parents and (run_dir is None or path != run_dir.resolve())
        if replaced or entered:
            raise MergeError(
                f"output {output} would {'replace' if replaced else 'be written inside'} {path}, "
                "which the merge reads; write the merged model elsewhere"
            )
    if output.exists() and not (output.is_dir() and not any(output.iterdir())) and not replace:
        raise MergeError(f"output {output} exists; remove it or pass --force to replace it")
    return output


def _listing(names: list[str], shown: int = 3) -> str:
    more = f", ... ({len(names)} tensors)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float in [0, 1] (outside it the merge extrapolates, which is refused)."""
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise DeclutrError(f"alpha must be between 0 and 1 (the trained model's weight), got {alpha}")
    return alpha


def merge_models(
    trained: str | os.PathLike,
    start: str | None,
    alpha: float,
    output: str | os.PathLike,
    replace: bool = False,
) -> Path:
    """Write ``alpha * trained + (1 - alpha) * start`` to ``output`` as a full export.

    ``trained``: a run directory or an export folder; ``start``: the start model, ``None`` for
    the run's own (``model.encoder.model_name`` of its ``config.json``); ``replace``: allow an
    existing ``output``. The paths are checked before any model loads. Returns ``output``."""
    alpha = check_alpha(alpha)
    export, run_dir = resolve_trained(trained)
    check_output(output, export, run_dir, start_from_run(trained) if start is None else str(start), replace=replace)
    interpolation = Interpolation(trained, start)
    for line in interpolation.summary():
        logger.info("%s", line)
    return interpolation.save(alpha, output, replace=replace)
