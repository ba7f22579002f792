"""The data stage: document sources, the tokenizer wrapper, corpus indexes, span samplers,
masking and collation, dataset readers and resumable, sharded data loaders.

Importing this package registers every data component.
"""

from declutr.data.collate import mask_tokens, pad_group
from declutr.data.columnar import HuggingFaceDataset, ParquetRows
from declutr.data.index import CorpusIndex, load_or_build_index
from declutr.data.loader import DataLoader, DocumentDataLoader
from declutr.data.mixture import MixtureComponent
from declutr.data.readers import (
    DatasetReader,
    Example,
    NLITripletReader,
    SentenceReader,
    SimCSEUnsupervisedReader,
    SpanReader,
)
from declutr.data.samplers import (
    DeclutrSpanSampler,
    SameTextSampler,
    SpanSampler,
    WholeTextSampler,
)
from declutr.data.sources import (
    AutoFormat,
    CsvRows,
    DocumentSource,
    JsonLines,
    Record,
    TextLines,
    expand_paths,
)
from declutr.data.tokenizer import TransformerTokenizer

__all__ = [
    "AutoFormat",
    "CorpusIndex",
    "CsvRows",
    "DataLoader",
    "DatasetReader",
    "DeclutrSpanSampler",
    "DocumentDataLoader",
    "DocumentSource",
    "Example",
    "HuggingFaceDataset",
    "JsonLines",
    "MixtureComponent",
    "NLITripletReader",
    "ParquetRows",
    "Record",
    "SameTextSampler",
    "SentenceReader",
    "SimCSEUnsupervisedReader",
    "SpanReader",
    "SpanSampler",
    "TextLines",
    "TransformerTokenizer",
    "WholeTextSampler",
    "expand_paths",
    "load_or_build_index",
    "mask_tokens",
    "pad_group",
]
