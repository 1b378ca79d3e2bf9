"""Selective semi-supervised fine-tuning: clinician labels plus reliable, masked pseudo-labels, and the
validation gate that judges the result. Higher layers (loop, faces) import these names from here."""

from asfda.adapt.finetune import Cancelled, CropMode, FinetuneOptions, TrainingItem, finetune
from asfda.adapt.options import AdaptOptions
from asfda.adapt.pseudo_labels import pseudo_label_items, remove_pseudo_label, save_pseudo_label
from asfda.adapt.reliability import ReliabilityOptions, select_reliable
from asfda.adapt.validation_gate import GateOptions, folds_of, gated_training

__all__ = [
    "AdaptOptions",
    "Cancelled",
    "CropMode",
    "FinetuneOptions",
    "GateOptions",
    "ReliabilityOptions",
    "TrainingItem",
    "finetune",
    "folds_of",
    "gated_training",
    "pseudo_label_items",
    "remove_pseudo_label",
    "save_pseudo_label",
    "select_reliable",
]
