"""Seaborn figures used by the book. Each function takes tidy data and returns a Figure.

The chapters only call these; nothing here computes results.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")


def _check_columns(df: pd.DataFrame, needed: Sequence[str], what: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; has {list(df.columns)}")


def prevalence_bars(df: pd.DataFrame, *, x: str = "prevalence", y: str = "class", hue: str | None = "source",
                    title: str = "") -> plt.Figure:
    """Horizontal bars of label prevalence, one bar per class (and per ``hue`` group)."""
    _check_columns(df, [x, y] + ([hue] if hue else []), "prevalence_bars")
    n_classes = df[y].nunique()
    fig, ax = plt.subplots(figsize=(7, 0.32 * n_classes * (1 + (df[hue].nunique() - 1) * 0.5 if hue else 1) + 1.2))
    sns.barplot(data=df, x=x, y=y, hue=hue, ax=ax, orient="h")
    ax.set_xlabel("fraction of images positive")
    ax.set_ylabel("")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def conditional_cooccurrence(labels: np.ndarray) -> np.ndarray:
    """``C[i, j]`` = P(label j positive | label i positive); unknown (NaN) counts as not positive.

    Rows of labels that are never positive are NaN.
    """
    y = np.asarray(labels, dtype=float)
    pos = (np.nan_to_num(y, nan=0.0) > 0.5).astype(float)
    both = pos.T @ pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return both / np.diag(both)[:, None]


def cooccurrence_heatmap(labels: np.ndarray, classes: Sequence[str], title: str = "") -> plt.Figure:
    """Heatmap of P(column label | row label)."""
    cond = conditional_cooccurrence(labels)
    fig, ax = plt.subplots(figsize=(0.55 * len(classes) + 2.5, 0.5 * len(classes) + 1.5))
    sns.heatmap(pd.DataFrame(cond, index=classes, columns=classes), ax=ax, vmin=0, vmax=1, cmap="mako_r",
                annot=len(classes) <= 14, fmt=".2f", annot_kws={"size": 7}, cbar_kws={"label": "P(col | row)"})
    ax.set_title(title)
    fig.tight_layout()
    return fig


def image_grid(images: np.ndarray, titles: Sequence[str], ncols: int = 6, title: str = "") -> plt.Figure:
    """Show uint8 images ``[N, C, H, W]`` (C = 1 grey or 3 colour) in a grid with one title each."""
    imgs = np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[1] not in (1, 3):
        raise ValueError(f"image_grid: expected [N, 1|3, H, W], got {imgs.shape}")
    if len(titles) != len(imgs):
        raise ValueError(f"image_grid: {len(imgs)} images but {len(titles)} titles")
    nrows = max(1, int(np.ceil(len(imgs) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.7 * ncols, 1.9 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t in zip(axes.flat, imgs, titles):
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(np.transpose(img, (1, 2, 0)))
        ax.set_title(t, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def history_curves(history: pd.DataFrame, metrics: Sequence[str], *, hue: str = "method",
                   style: str | None = None, title: str = "") -> plt.Figure:
    """Per-epoch curves, one panel per metric (e.g. ``train_loss``, ``val_loss``, ``val_macro_auc``).

    Several runs per line (seeds) give the mean and a band from the lowest to the highest
    run: with 2-5 seeds a range says more than a bootstrap interval, and it draws the same
    figure every time (seaborn's bootstrap band is random and slow).
    """
    _check_columns(history, ["epoch", hue, *metrics], "history_curves")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, m in zip(axes.flat, metrics):
        sns.lineplot(data=history, x="epoch", y=m, hue=hue, style=style, ax=ax, marker="o", markersize=3,
                     errorbar=("pi", 100))
        ax.set_title(m.replace("_", " "))
        ax.set_ylabel("")
        if ax is not axes.flat[-1] and ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def forest_plot(df: pd.DataFrame, *, label: str = "class", estimate: str = "auc", low: str = "low",
                high: str = "high", hue: str | None = None, title: str = "", reference: float | None = 0.5,
                xlabel: str | None = None) -> plt.Figure:
    """Point estimates with confidence intervals, one row per ``label`` (a dashed line at ``reference``)."""
    _check_columns(df, [label, estimate, low, high], "forest_plot")
    groups = [(None, df)] if hue is None else list(df.groupby(hue, sort=False))
    labels = list(dict.fromkeys(df[label]))
    fig, ax = plt.subplots(figsize=(6.5, 0.33 * len(labels) + 1.4))
    offsets = np.linspace(-0.2, 0.2, len(groups)) if len(groups) > 1 else [0.0]
    palette = sns.color_palette(n_colors=len(groups))
    for (name, g), off, color in zip(groups, offsets, palette):
        ypos = np.array([labels.index(v) for v in g[label]]) + off
        ax.errorbar(g[estimate], ypos, xerr=[g[estimate] - g[low], g[high] - g[estimate]], fmt="o",
                    color=color, capsize=2, label=name)
    if reference is not None:
        ax.axvline(reference, color="grey", lw=0.8, ls="--")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel or f"{estimate} (95% CI)")
    if hue is not None:
        ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def roc_curves(y_true: np.ndarray, y_score: np.ndarray, classes: Sequence[str], title: str = "") -> plt.Figure:
    """One ROC curve per class with a defined AUC (NaN targets masked)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(5.5, 5))
    palette = sns.color_palette("husl", len(classes))
    for k, name in enumerate(classes):
        mask = ~np.isnan(y_true[:, k])
        t, s = y_true[mask, k], y_score[mask, k]
        if len(np.unique(t)) < 2:
            continue
        fpr, tpr, _ = roc_curve(t, s)
        ax.plot(fpr, tpr, color=palette[k], lw=1.2, label=f"{name} ({roc_auc_score(t, s):.2f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=6, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def metric_vs_size(df: pd.DataFrame, *, x: str = "train_n", y: str = "macro_auc", hue: str = "method",
                   title: str = "", ylabel: str = "test macro AUC") -> plt.Figure:
    """Mean over seeds with a 95% CI band, against subset size (log x axis)."""
    _check_columns(df, [x, y, hue], "metric_vs_size")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    sns.lineplot(data=df, x=x, y=y, hue=hue, marker="o", errorbar=("ci", 95), ax=ax)
    ax.set_xscale("log")
    ax.set_xticks(sorted(df[x].unique()), [str(v) for v in sorted(df[x].unique())])
    ax.minorticks_off()
    ax.set_xlabel("training images (small target subset)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def heatmap(table: pd.DataFrame, *, title: str = "", fmt: str = ".3f", center: float | None = 0.0,
            cbar_label: str = "") -> plt.Figure:
    """Annotated heatmap of a small pivot table (e.g. teacher domain × method, or T × alpha)."""
    fig, ax = plt.subplots(figsize=(1.1 * table.shape[1] + 3, 0.6 * table.shape[0] + 1.6))
    sns.heatmap(table.astype(float), annot=True, fmt=fmt, cmap="vlag" if center is not None else "mako_r",
                center=center, ax=ax, cbar_kws={"label": cbar_label})
    ax.set_title(title)
    fig.tight_layout()
    return fig


def scatter_with_fit(df: pd.DataFrame, *, x: str, y: str, hue: str | None = None, title: str = "",
                     xlabel: str = "", ylabel: str = "", zero_line: bool = True) -> plt.Figure:
    """Scatter of ``y`` against ``x`` with a linear fit (used for gain vs teacher AUC)."""
    _check_columns(df, [x, y] + ([hue] if hue else []), "scatter_with_fit")
    fig, ax = plt.subplots(figsize=(6, 4.2))
    sns.regplot(data=df, x=x, y=y, scatter=False, ax=ax, color="grey", truncate=False)
    sns.scatterplot(data=df, x=x, y=y, hue=hue, ax=ax, s=45)
    if zero_line:
        ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def curves_with_ci(df: pd.DataFrame, *, x: str, y: str, low: str, high: str, hue: str, title: str = "",
                   xlabel: str = "", ylabel: str = "", log_x: bool = True) -> plt.Figure:
    """Lines of ``y`` against ``x`` per ``hue`` with their interval band (precomputed ``low``/``high``)."""
    _check_columns(df, [x, y, low, high, hue], "curves_with_ci")
    fig, ax = plt.subplots(figsize=(6.8, 4.3))
    for (name, g), color in zip(df.groupby(hue, sort=False), sns.color_palette(n_colors=df[hue].nunique())):
        g = g.sort_values(x)
        ax.plot(g[x], g[y], marker="o", color=color, label=name)
        ax.fill_between(g[x], g[low], g[high], color=color, alpha=0.18)
    if log_x:
        ax.set_xscale("log")
        ax.set_xticks(sorted(df[x].unique()), [f"{v:g}" for v in sorted(df[x].unique())])
        ax.minorticks_off()
    ax.set(xlabel=xlabel or x, ylabel=ylabel or y, title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def regime_map(points: pd.DataFrame, fits: pd.DataFrame, *, headline_advantage: float | None = None,
               paper_gains: Sequence[float] = (4.0, 9.0), title: str = "") -> plt.Figure:
    """Gain over transfer against the teacher's advantage, per comparison, with fitted lines and crossovers.

    ``points``: rows of :func:`kdmed.analysis.regime` (comparison, advantage and gain with
    their CIs, in AUC points); ``fits``: its per-comparison slope and crossover.
    ``paper_gains`` are drawn as dotted lines: the paper's +4 % and +9 % read as AUC points.
    """
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    colors = sns.color_palette(n_colors=points["comparison"].nunique())
    for (name, g), color in zip(points.groupby("comparison", sort=False), colors):
        ax.errorbar(g["advantage (AUC points)"], g["gain (AUC points)"],
                    xerr=[g["advantage (AUC points)"] - g["advantage low"], g["advantage high"] - g["advantage (AUC points)"]],
                    yerr=[g["gain (AUC points)"] - g["low"], g["high"] - g["gain (AUC points)"]],
                    fmt="o", color=color, capsize=2, label=name)
        fit = fits.loc[name]
        xs = np.linspace(g["advantage (AUC points)"].min() - 1, g["advantage (AUC points)"].max() + 1, 20)
        intercept = float(np.mean(g["gain (AUC points)"]) - fit["slope"] * np.mean(g["advantage (AUC points)"]))
        ax.plot(xs, intercept + fit["slope"] * xs, color=color, lw=1, alpha=0.7)
    ax.axhline(0, color="black", lw=0.8)
    ax.axvline(0, color="grey", lw=0.6, ls=":")
    for v in paper_gains:
        ax.axhline(v, color="tab:red", lw=0.8, ls=":")
        ax.text(ax.get_xlim()[0], v, f" paper: +{v:g} % (read as AUC points)", color="tab:red", va="bottom", fontsize=7)
    if headline_advantage is not None and np.isfinite(headline_advantage):
        ax.axvline(headline_advantage, color="tab:green", lw=1, ls="--")
        ax.text(headline_advantage, ax.get_ylim()[0], " headline teacher", color="tab:green", fontsize=7,
                va="bottom", rotation=90)
    ax.set_xlabel("teacher's advantage: its AUC on the target test set minus the baseline's (AUC points)")
    ax.set_ylabel("gain over transfer learning (AUC points)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
