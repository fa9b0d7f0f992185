"""Ratings data: fetch MovieLens-100K, load ratings files, and split them per user."""

from tune_rec.data.dataset import Dataset, Interactions
from tune_rec.data.fetch import (
    ML100K_SHA256,
    SOURCES,
    default_data_dir,
    fetch_ml100k,
    sha256_file,
)
from tune_rec.data.ratings import deduplicate, load_ratings
from tune_rec.data.split import (
    SPLIT_METHODS,
    check_disjoint,
    check_evaluable,
    describe_dataset,
    load_dataset,
    split_ratings,
)

__all__ = [
    "ML100K_SHA256",
    "SOURCES",
    "SPLIT_METHODS",
    "Dataset",
    "Interactions",
    "check_disjoint",
    "check_evaluable",
    "deduplicate",
    "default_data_dir",
    "describe_dataset",
    "fetch_ml100k",
    "load_dataset",
    "load_ratings",
    "sha256_file",
    "split_ratings",
]
