"""Training objectives: contrastive (nt_xent, info_nce), IS-BERT's infomax, masked-LM."""

from declutr.losses import contrastive, infomax, mlm
from declutr.losses.base import ContrastiveLoss, Loss, MutualInformationLoss
from declutr.losses.contrastive import InfoNCELoss, NTXentLoss
from declutr.losses.infomax import JensenShannonInfomaxLoss
from declutr.losses.mlm import MaskedLanguageModelingLoss

__all__ = [
    "ContrastiveLoss",
    "InfoNCELoss",
    "JensenShannonInfomaxLoss",
    "Loss",
    "MaskedLanguageModelingLoss",
    "MutualInformationLoss",
    "NTXentLoss",
    "contrastive",
    "infomax",
    "mlm",
]
