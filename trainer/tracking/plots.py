"""Pictures and reports of a finished classifier run: training curves, a confusion matrix and a
per-class report. matplotlib's Agg backend only: no display is ever needed."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402


def training_curves(history: dict, path: str) -> None:
    """One panel per metric (loss, accuracy, ...), train and validation lines against the epoch."""
    names = [k for k in history if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_counts(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def confusion_matrix(counts: np.ndarray, class_names: list[str], path: str) -> None:
    """Rows are true classes, columns predicted ones; each cell shows its count."""
    n = len(class_names)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=90 if n > 12 else 0)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({int(counts.sum())} test examples)")
    if n <= 30:  # beyond that the numbers are unreadable; the colours still tell the story
        threshold = counts.max() / 2 if counts.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if counts[i, j] > threshold else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def per_class_report(counts: np.ndarray, class_names: list[str]) -> str:
    """Precision, recall, F1 and support per class, and their macro averages, as a text table."""
    true_positives = np.diag(counts).astype(float)
    predicted = counts.sum(axis=0).astype(float)
    support = counts.sum(axis=1)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros_like(true_positives), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    width = max(12, *(len(str(c)) for c in class_names))
    lines = [f"{'class':<{width}} precision    recall        f1   support"]
    for name, p, r, f, s in zip(class_names, precision, recall, f1, support):
        lines.append(f"{str(name):<{width}} {p:9.4f} {r:9.4f} {f:9.4f} {s:9d}")
    accuracy = true_positives.sum() / max(1, support.sum())
    lines += ["", f"{'macro avg':<{width}} {precision.mean():9.4f} {recall.mean():9.4f} {f1.mean():9.4f} {support.sum():9d}",
              f"{'accuracy':<{width}} {accuracy:29.4f} {support.sum():9d}"]
    return "\n".join(lines) + "\n"
