"""From the backend's Arrow export to a train / held-out split of feature rows by name.

Rows are kept only when they are labelled with one of the model's labels, belong to feature
set ``v1`` (and the requested kind), and carry every selected feature as a finite number; each
reason for dropping a row is counted for the model card. The split is by pseudonymous subject,
decided by a salted hash of the subject id: deterministic across runs and machines, one subject
never on both sides, and a subject keeps its side as the data grows, so successive model
versions are compared on the same people.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.ipc

from trainer.errors import DataError
from trainer.features import EXPORT_PREFIX, FEATURE_SET

DEFAULT_SPLIT_SALT = "vitalcore-holdout-v1"
REQUIRED_COLUMNS = ("subject", "kind", "feature_set", "label")


@dataclass
class Rows:
    """Feature rows (raw units, float64), 0/1 targets and the subject of each row."""

    x: np.ndarray
    y: np.ndarray
    subjects: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, mask: np.ndarray) -> "Rows":
        return Rows(self.x[mask], self.y[mask], self.subjects[mask])

    def class_counts(self) -> tuple[int, int]:
        pos = int(self.y.sum())
        return len(self.y) - pos, pos


@dataclass
class Dataset:
    """What the export yielded for one model: the split rows and the counts behind them."""

    features: list[str]
    labels: list[str]
    train: Rows
    held_out: Rows
    # Raw feature columns of every v1-labelled row, by name, for evaluating another model
    # (the active one) that may take other features; NaN where a row lacks a feature.
    held_out_columns: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def read_export(data: bytes) -> pa.Table:
    """Parses the Arrow IPC stream; a clear error instead of an Arrow traceback."""
    if not data:
        raise DataError("the training export is empty (0 bytes)")
    try:
        return pa.ipc.open_stream(data).read_all()
    except (pa.ArrowException, OSError, ValueError):
        raise DataError("the training export is not a readable Arrow IPC stream") from None


def held_out_side(subject: str, fraction: float, salt: str) -> bool:
    """Whether a subject belongs to the held-out side: a salted sha256, read as a number in [0, 1)."""
    digest = hashlib.sha256(f"{salt}\0{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def build_dataset(
    table: pa.Table,
    features: list[str],
    labels: list[str],
    kind: str | None,
    held_out_fraction: float,
    salt: str = DEFAULT_SPLIT_SALT,
    min_rows_per_class: int = 5,
) -> Dataset:
    """Selects, cleans and splits; raises :class:`DataError` when there is too little to train on."""
    if len(labels) != 2:
        raise DataError("only binary classification is supported: give exactly two labels")
    counts = {"exported": table.num_rows}
    if table.num_rows == 0:
        raise DataError("the training export has no records (none consented to model training yet)")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"the training export lacks column(s) {', '.join(missing)}")
    absent = [f for f in features if EXPORT_PREFIX + f not in table.column_names]
    if absent:
        raise DataError(f"no exported record carries feature(s) {', '.join(absent)}")
    for name in table.column_names:
        t = table.schema.field(name).type
        numeric = pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t)
        text = pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)
        if (name.startswith(EXPORT_PREFIX) and not numeric) or (name in REQUIRED_COLUMNS and not text):
            raise DataError(f"the training export's column {name} has type {t}, not what the trainer reads")

    subject = np.asarray(table.column("subject").to_pylist(), dtype=object)
    label = np.asarray(table.column("label").to_pylist(), dtype=object)
    fset = np.asarray(table.column("feature_set").to_pylist(), dtype=object)
    kinds = np.asarray(table.column("kind").to_pylist(), dtype=object)

    def column(name: str) -> np.ndarray:
        # Nulls become NaN: a record that lacks a feature has no value for it.
        return table.column(EXPORT_PREFIX + name).to_numpy(zero_copy_only=False).astype(np.float64)

    keep = np.ones(table.num_rows, dtype=bool)

    def drop(reason: str, bad: np.ndarray) -> None:
        nonlocal keep
        counts[f"dropped_{reason}"] = int((keep & bad).sum())
        keep &= ~bad

    drop("unlabelled", np.array([v is None for v in label], dtype=bool))
    drop("other_feature_set", fset != FEATURE_SET)
    if kind is not None:
        drop("other_kind", kinds != kind)
    drop("other_label", np.array([v not in labels for v in label], dtype=bool))
    all_columns = {
        name[len(EXPORT_PREFIX):]: column(name[len(EXPORT_PREFIX):])
        for name in table.column_names
        if name.startswith(EXPORT_PREFIX)
    }
    x = np.column_stack([all_columns[f] for f in features])
    drop("missing_feature", ~np.isfinite(x).all(axis=1))
    counts["used"] = int(keep.sum())
    if counts["used"] == 0:
        raise DataError(
            f"the training export has no usable labelled records for labels {'/'.join(labels)}"
            f"{'' if kind is None else f' and kind {kind}'} ({counts['exported']} exported)"
        )

    y = (label == labels[1]).astype(np.int64)
    rows = Rows(x[keep], y[keep], subject[keep])
    side = np.array([held_out_side(s, held_out_fraction, salt) for s in rows.subjects], dtype=bool)
    train, held_out = rows.take(~side), rows.take(side)
    counts["subjects_train"] = len(set(train.subjects))
    counts["subjects_held_out"] = len(set(held_out.subjects))
    counts["train_rows"], counts["held_out_rows"] = len(train), len(held_out)
    counts["train_" + labels[0]], counts["train_" + labels[1]] = train.class_counts()
    counts["held_out_" + labels[0]], counts["held_out_" + labels[1]] = held_out.class_counts()

    smallest = min(*train.class_counts(), *held_out.class_counts())
    if smallest < min_rows_per_class:
        raise DataError(
            f"too little labelled data: need at least {min_rows_per_class} rows of each label on each side "
            f"of the split, have train {train.class_counts()} and held-out {held_out.class_counts()} "
            f"({labels[0]}, {labels[1]}) from {counts['used']} usable rows"
        )
    held_out_columns = {name: col[keep][side] for name, col in all_columns.items()}
    return Dataset(features, labels, train, held_out, held_out_columns, counts)
