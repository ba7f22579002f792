"""Models: declutr, simcse and isbert, wired from the same encoders, poolers and losses."""

from declutr.models import declutr, isbert, simcse
from declutr.models.declutr import DeclutrModel
from declutr.models.isbert import ISBERTModel
from declutr.models.model import Model
from declutr.models.simcse import SimCSEModel

__all__ = ["DeclutrModel", "ISBERTModel", "Model", "SimCSEModel", "declutr", "isbert", "simcse"]
