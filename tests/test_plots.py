import matplotlib

matplotlib.use("Agg")  # tests only; chapters never set a backend

import numpy as np
import pandas as pd
import pytest

from kdmed import plots


def test_conditional_cooccurrence_by_hand():
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 1, np.nan], [1, 1, 1]], dtype=float)
    c = plots.conditional_cooccurrence(y)
    # label 0 positive in rows 0,1,3; label 1 also positive in rows 0,3 -> 2/3
    assert c[0, 1] == pytest.approx(2 / 3)
    assert c[1, 0] == pytest.approx(2 / 3)
    assert c[2, 0] == pytest.approx(1.0)
    np.testing.assert_allclose(np.diag(c), 1.0)


def test_prevalence_bars_one_bar_per_class_and_source():
    df = pd.DataFrame({"class": list("abc") * 2, "prevalence": [0.1, 0.2, 0.3, 0.15, 0.25, 0.05],
                       "source": ["full"] * 3 + ["subset"] * 3})
    fig = plots.prevalence_bars(df)
    widths = sorted(round(p.get_width(), 3) for p in fig.axes[0].patches if p.get_width() > 0)
    assert widths == sorted([0.1, 0.2, 0.3, 0.15, 0.25, 0.05])


def test_prevalence_bars_names_missing_column():
    with pytest.raises(ValueError, match="prevalence"):
        plots.prevalence_bars(pd.DataFrame({"class": ["a"], "source": ["x"]}))


def test_image_grid_checks_shape_and_titles():
    imgs = np.zeros((3, 1, 8, 8), dtype=np.uint8)
    fig = plots.image_grid(imgs, ["a", "b", "c"], ncols=2)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="3 images but 2 titles"):
        plots.image_grid(imgs, ["a", "b"])
    with pytest.raises(ValueError, match=r"\[N, 1\|3, H, W\]"):
        plots.image_grid(np.zeros((3, 8, 8)), ["a", "b", "c"])


def test_roc_curves_skips_single_valued_class():
    rng = np.random.default_rng(0)
    y = np.stack([rng.integers(0, 2, 50), np.zeros(50)], 1).astype(float)
    fig = plots.roc_curves(y, rng.random((50, 2)), ["has both", "all negative"])
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert any(lbl.startswith("has both") for lbl in labels)
    assert not any(lbl.startswith("all negative") for lbl in labels)


def test_history_curves_draw_the_mean_and_the_range_over_runs():
    hist = pd.DataFrame({"epoch": [1, 1, 2, 2], "method": "kd", "seed": [0, 1, 0, 1],
                         "val_loss": [0.2, 0.6, 0.3, 0.9]})
    fig = plots.history_curves(hist, ["val_loss"])
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.4, 0.6])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.2) and band.max() == pytest.approx(0.9)
    matplotlib.pyplot.close(fig)
