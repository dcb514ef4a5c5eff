"""Dataset readers for the real on-disk layouts (FORMATS.md), and the dataset config.

Every reader returns an :class:`ImageTable` subclass: a DataFrame of samples (column
``path`` = the image's real path, plus labels/metadata), a DataFrame of counted
``exclusions`` (``source, row, reason, category``; each reason names the offending
value), and ``meta``; a read with exclusions warns once (:class:`DataExclusionWarning`).
Readers never open a path outside their root (:class:`~qclip.data.base.DatasetRoot`),
read columns by name, tolerate extra columns, CRLF line endings and a UTF-8 BOM, and
raise :class:`~qclip.errors.DataFormatError` naming the file (and the column, row or
value) for malformed input, undecodable images and decompression bombs included; a
missing root raises :class:`~qclip.errors.DatasetUnavailable` with the expected layout. The synthetic world generator lives in
``qclip.data.synthetic`` (not imported here) and writes these same layouts.
"""

from __future__ import annotations

from qclip.data.base import (
    ClassificationSet,
    DataExclusionWarning,
    FacetSet,
    FairFaceSet,
    ImageTable,
    RetrievalSet,
    SpuriousSet,
)
from qclip.data.cifar_c import ArrayClassificationSet, read_cifar_c
from qclip.data.coco import read_coco_captions
from qclip.data.config import DataConfig, DataConfigError, DatasetEntry
from qclip.data.counteranimal import CounterAnimalSet, read_counteranimal
from qclip.data.facet import read_facet, skin_tone_from_votes
from qclip.data.fairface import read_fairface
from qclip.data.imagefolder import read_imagefolder, read_ood_folder
from qclip.data.prompts import (
    facet_classes,
    format_prompts,
    imagenet_classnames,
    imagenet_wnids,
    load_fairface_prompts,
    resolve_templates,
)
from qclip.data.spurious import read_spurious

__all__ = [
    "ImageTable",
    "ClassificationSet",
    "RetrievalSet",
    "FacetSet",
    "FairFaceSet",
    "SpuriousSet",
    "ArrayClassificationSet",
    "CounterAnimalSet",
    "DataExclusionWarning",
    "read_imagefolder",
    "read_ood_folder",
    "read_coco_captions",
    "read_facet",
    "read_fairface",
    "read_spurious",
    "read_cifar_c",
    "read_counteranimal",
    "skin_tone_from_votes",
    "DataConfig",
    "DataConfigError",
    "DatasetEntry",
    "format_prompts",
    "resolve_templates",
    "imagenet_classnames",
    "imagenet_wnids",
    "facet_classes",
    "load_fairface_prompts",
]
