"""The foundation: registry, construction from typed signatures, configs, plugins, errors.

Imports neither torch nor transformers.
"""

from declutr.core.construct import Lazy, build, validate
from declutr.core.errors import ConfigurationError, DeclutrError
from declutr.core.registrable import Registrable

__all__ = ["ConfigurationError", "DeclutrError", "Lazy", "Registrable", "build", "validate"]
