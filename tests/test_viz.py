"""The shared figure helpers: one depth convention with a colour bar, class legends
on label figures, FPS at a lower density with its top view, F/C histograms, training baselines."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from depthg_lib import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _legend_texts(fig):
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def test_depth_convention_is_near_bright_and_not_dominated_by_the_sky():
    depth = np.full((20, 20), 100.0)  # sky
    depth[10:] = np.linspace(2, 10, 10)[:, None]  # ground, 2..10
    fig, ax = plt.subplots()
    im = viz.draw_depth(ax, depth)
    assert len(fig.axes) == 2  # the image and its colour bar
    rgba = im.cmap(im.norm(depth))
    lum = rgba[..., :3].mean(-1)
    assert lum[10, 0] > lum[19, 0] > lum[0, 0]  # near (2) > farther ground (10) > sky
    # a linear scale would put the whole ground within the darkest/lightest 10 % of colours;
    # the power scale spreads it over a good part of the map
    assert im.norm(10.0) - im.norm(2.0) > 0.3
    assert viz.depth_values(np.array([0, 65535], dtype=np.uint16)).tolist() == [0.0, 1.0]


def test_class_legend_lists_only_the_classes_shown():
    fig = plt.figure()
    palette = viz.label_palette(5)
    viz.class_legend(fig, palette, ["a", "b", "c", "d", "e"],
                     [np.array([[0, 3], [255, 3]], dtype=np.uint8)])
    assert _legend_texts(fig) == ["a", "d"]
    fig2 = plt.figure()
    viz.class_legend(fig2, palette, None, [np.array([[1]])])
    assert _legend_texts(fig2) == ["class 1"]


def test_class_palette_gives_n_colours_without_a_reader_too():
    from depthg_lib.data.synthscenes import CLASSES

    own = np.array([c.color for c in CLASSES], np.uint8)
    np.testing.assert_array_equal(viz.class_palette(), own)
    np.testing.assert_array_equal(viz.class_palette(n=3), own[:3])
    more = len(CLASSES) + 2  # more than SynthScenes has: label_palette, as with a reader
    np.testing.assert_array_equal(viz.class_palette(n=more), viz.label_palette(more))


def test_label_figures_carry_a_legend():
    from depthg_lib.viz.evaluation import plot_crf_comparison, plot_examples, plot_predictions

    g = np.random.default_rng(0)
    img = g.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    lab = g.integers(0, 3, (8, 8)).astype(np.uint8)
    names = ["sky", "grass", "road"]
    pal = viz.label_palette(3)
    f1 = plot_examples([img], [lab], [lab], [lab], [0, 1, 2], pal, class_names=names)
    f2 = plot_crf_comparison([img], [lab], [lab], [lab], [0, 1, 2], pal, class_names=names)
    f3 = plot_predictions([img], [lab], pal, names)
    for fig in (f1, f2, f3):
        assert _legend_texts(fig) == sorted(names, key=names.index)


def test_sampling_figure_shows_a_lower_density_and_a_top_view():
    from depthg_lib.viz.method import plot_sampling

    g = torch.Generator().manual_seed(0)
    depth = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 48, 48, generator=g), 7, 1, 3)
    fig = plot_sampling(depth[0, 0], (12, 12), 8, np.zeros((48, 48, 3), np.uint8), seed=0)
    titles = [ax.get_title() for ax in fig.axes]
    assert any("4×4" in t for t in titles) and "top view of the 3D points" in titles
    top = next(ax for ax in fig.axes if ax.get_title() == "top view of the 3D points")
    assert len(top.collections[1].get_offsets()) == 16  # the 4×4 FPS choices


def test_correlation_figure_puts_f_and_c_on_one_axis():
    from depthg_lib.viz.method import plot_correlations

    g = torch.Generator().manual_seed(1)
    feats, codes = torch.randn(6, 8, 8, generator=g), torch.randn(4, 8, 8, generator=g)
    fig = plot_correlations(feats, codes, (2, 3), depth=np.random.default_rng(0).random((16, 16)))
    hist = next(ax for ax in fig.axes if ax.get_title() == "values of F and C (a → a)")
    assert [t.get_text().split(":")[0] for t in hist.get_legend().get_texts()] == ["F", "C"]
    f_im = next(ax for ax in fig.axes if ax.get_title().startswith("F:")).images[0]
    c_im = next(ax for ax in fig.axes if ax.get_title().startswith("C:")).images[0]
    assert f_im.get_clim() == c_im.get_clim() == (-1, 1)
    assert any(ax.get_title() == "depth a" for ax in fig.axes)


def test_training_figure_draws_baselines_and_the_weighted_depth_share():
    from depthg_lib.viz.training import plot_training

    steps = np.arange(6.0)
    nan = np.full(6, np.nan)
    log = {"step": steps, "samples": np.full(6, 4.0), "weight_depth": 0.2 * 0.5 ** (steps // 2),
           "shift_depth": np.full(6, 0.1), "pos_intra": np.full(6, -0.1),
           "pos_inter": np.full(6, -0.05), "neg_inter": np.full(6, 0.02),
           "depth": np.full(6, -0.5), "loss": np.full(6, -0.2), "linear_loss": np.ones(6),
           "cluster_loss": -np.ones(6), "total": np.ones(6), "val_linear_miou": nan.copy(),
           "val_linear_acc": nan.copy(), "val_cluster_miou": nan.copy(),
           "val_cluster_acc": nan.copy()}
    for k in ("val_linear_miou", "val_linear_acc", "val_cluster_miou", "val_cluster_acc"):
        log[k][[2, 5]] = [10.0, 20.0]
    fig = plot_training(log, baselines={"k-means on raw features": 15.0})
    loss_ax, scores_ax = fig.axes[0], fig.axes[3]
    labels = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert "w_depth · depth (weighted)" in labels and "decays ×0.25" in loss_ax.get_title()
    share = next(line for line in loss_ax.lines if line.get_label().startswith("w_depth"))
    assert np.allclose(share.get_ydata(), log["weight_depth"] * log["depth"])
    base = [line for line in scores_ax.lines if "k-means" in line.get_label()]
    assert len(base) == 1 and np.allclose(base[0].get_ydata(), 15.0)


def test_appendix_figures_follow_the_conventions():
    from depthg_lib.viz.embedded import show_depth, show_kmeans, show_patch_pca

    g = np.random.default_rng(2)
    imgs = [g.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(2)]
    labels = g.integers(0, 3, (2, 4, 4)).astype(np.uint8)
    fig = show_depth(imgs, g.random((2, 16, 16)), {"net": g.random((2, 16, 16))})
    assert len(fig.axes) == 3 * 2 + 2  # + one colour bar per depth row
    names = _legend_texts(show_kmeans(imgs, labels, {"k-means": labels}))
    assert names and all(not n.startswith("class ") for n in names)  # SynthScenes' names
    fig = show_patch_pca(imgs, torch.randn(2, 6, 4, 4), labels)
    assert _legend_texts(fig) == names
