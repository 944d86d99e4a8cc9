"""Sample points: golden FPS (released), corrected FPS geometry, `sample`, bad input."""

from pathlib import Path

import numpy as np
import pytest
import torch

from depthg_lib import reference as ref
from depthg_lib.errors import DepthGError
from depthg_lib.sampling import (
    K_CORRECTED,
    K_RELEASED,
    depth_to_points,
    farthest_point_indices,
    fps_coords,
    grid_depth,
    indices_to_coords,
    normalized_depth,
    one_depth_map,
    random_coords,
    sample,
    sampling_grid,
)

GOLDEN = Path(__file__).parent / "data" / "golden"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module")
def d_fps():
    return dict(np.load(GOLDEN / "d_fps.npz"))


def test_released_k_is_tan_of_45_radians():
    assert K_RELEASED == pytest.approx(3.23955, abs=1e-5)  # docs/method.md §7.1 rounds it to 3.2396
    assert K_CORRECTED == pytest.approx(2.0)


def test_points_match_golden_bitwise(d_fps):
    pts = depth_to_points(torch.from_numpy(d_fps["depth"][:1]))  # (1,3,784)
    assert torch.equal(pts[0].T, torch.from_numpy(d_fps["points_map0"]))


def test_fps_selection_order_matches_golden(d_fps):
    pts = torch.from_numpy(d_fps["points_map0"]).T[None]
    inds = farthest_point_indices(pts, 81)[0]
    assert inds.tolist() == d_fps["fps_inds_map0_81"].tolist()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("key,grid,n", [("coords_n9", 28, 9), ("coords_n11", 28, 11),
                                        ("coords_pooled14_n7", 14, 7)])
def test_fps_coords_match_golden(d_fps, device, key, grid, n):
    depth = torch.from_numpy(d_fps["depth"]).to(device)
    coords = fps_coords(depth, (grid, grid), n, fidelity="released").cpu()
    expected = torch.from_numpy(d_fps[key]) * 2 - 1
    assert coords.shape == (3, n, n, 2)
    assert torch.equal(coords, expected)


def test_the_default_fidelity_is_the_released_one(d_fps):
    depth = torch.from_numpy(d_fps["depth"])
    assert torch.equal(fps_coords(depth, (28, 28), 9),
                       fps_coords(depth, (28, 28), 9, fidelity="released"))
    inds = torch.tensor([[5, 0, 27, 30]])  # selection order on a 28-wide grid, n = 2
    assert torch.equal(indices_to_coords(inds, (28, 28), 2),
                       indices_to_coords(inds, (28, 28), 2, fidelity="released"))


@pytest.mark.parametrize("size", [(9, 8), (10, 8), (8, 9), (8, 10), (9, 9), (8, 6)])
def test_pooling_to_a_grid_that_does_not_divide_the_map(size):
    """Cells of unequal size: each grid value is its cell's mean, as `reference.grid_depth`."""
    depth = torch.rand(2, 1, *size, generator=torch.Generator().manual_seed(0)) * 255
    torch.testing.assert_close(grid_depth(depth, (4, 4)), ref.grid_depth(depth, (4, 4)))


def test_pooling_takes_depth_with_or_without_its_channel():
    depth = torch.rand(2, 1, 16, 12, generator=torch.Generator().manual_seed(0))
    assert torch.equal(grid_depth(depth[:, 0], (4, 4)), grid_depth(depth, (4, 4)))
    assert torch.equal(fps_coords(depth[:, 0], (4, 4), 2), fps_coords(depth, (4, 4), 2))


def test_sampling_grid_swaps_the_axes_by_default():
    """Without a fidelity the grid is the released one: read transposed (§7)."""
    coords = torch.rand(1, 3, 3, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(sampling_grid(coords), coords.transpose(1, 2))
    assert torch.equal(sampling_grid(coords, "corrected"), coords)


def test_pooling_matches_golden(d_fps):
    pooled = grid_depth(torch.from_numpy(d_fps["depth"]), (14, 14))
    assert torch.equal(pooled, torch.from_numpy(d_fps["depth_pooled_14"]))


def test_fps_on_a_batch_equals_fps_per_image(d_fps):
    depth = torch.from_numpy(d_fps["depth"])
    batched = fps_coords(depth, (28, 28), 9)
    for b in range(3):
        assert torch.equal(batched[b], fps_coords(depth[b:b + 1], (28, 28), 9)[0])


def test_duplicate_points_are_never_chosen_twice():
    # zero depth collapses every cell to the origin: the released loop then takes the
    # remaining cells in index order, each exactly once
    depth = torch.zeros(2, 1, 8, 8)
    depth[1, 0, :4] = 50.0
    inds = farthest_point_indices(depth_to_points(depth), 64)
    for row in inds:
        assert sorted(row.tolist()) == list(range(64))
    assert inds[0].tolist() == list(range(64))


def test_corrected_coords_on_the_smallest_grids():
    """A 2×2 grid: the four cell centres are the corners ±1; a 1×1 grid: its centre 0."""
    depth = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    corners = fps_coords(depth, (2, 2), 2, "corrected").reshape(4, 2).tolist()
    assert sorted(corners) == [[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]]
    assert fps_coords(depth, (1, 1), 1, "corrected").tolist() == [[[[0.0, 0.0]]]]


def test_corrected_coords_are_cell_centres_in_selection_order(d_fps):
    depth = torch.from_numpy(d_fps["depth"])
    h = w = 28
    coords = fps_coords(depth, (h, w), 9, fidelity="corrected")
    grid = grid_depth(depth, (h, w))
    inds = farthest_point_indices(depth_to_points(grid, "corrected"), 81)
    # reading a map that holds each cell's index returns the chosen indices, in order
    index_map = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w).expand(3, 1, h, w)
    read = sample(index_map, coords, fidelity="corrected").reshape(3, 81)
    assert torch.allclose(read, inds.float(), atol=1e-3)
    assert torch.equal(coords[:, 0, 0], torch.full((3, 2), -1.0))  # starts at cell 0


def test_released_sampler_reads_fps_points_transposed(d_fps):
    """Golden README §2: x gets the row fraction, and the grid axes are swapped."""
    depth = torch.from_numpy(d_fps["depth"][:1])
    coords = fps_coords(depth, (28, 28), 9)  # (row/h, col/w)·2−1, raster order
    rows = torch.arange(28.0).view(1, 1, 28, 1).expand(1, 1, 28, 28)
    cols = torch.arange(28.0).view(1, 1, 1, 28).expand(1, 1, 28, 28)
    frac = (coords + 1) / 2  # back to (row/h, col/w)
    # pixel position read with align_corners=True: x = row/h·(W−1) is a column index
    read_col = sample(cols.contiguous(), coords)[0, 0]
    read_row = sample(rows.contiguous(), coords)[0, 0]
    assert torch.allclose(read_col, frac[0, :, :, 0].T * 27, atol=1e-4)
    assert torch.allclose(read_row, frac[0, :, :, 1].T * 27, atol=1e-4)


def test_sample_reads_where_the_coordinates_point():
    """Maps whose values are their own column and row on a 5×5 grid, read at hand-picked
    points: x = −1, 0, 1 is column 0, 2, 4 and y the row (align_corners=True), bilinear in
    between; `released` fills output (a, c) from coords[c, a] (docs/method.md §7)."""
    cols = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 5, 5)
    rows = torch.arange(5.0).view(1, 1, 5, 1).expand(1, 1, 5, 5)
    maps = torch.cat([cols, rows], 1)
    coords = torch.tensor([[[[-1.0, -1.0], [1.0, 0.0]],
                            [[0.5, -0.5], [-0.25, 1.0]]]])  # (1, 2, 2, 2), (x, y)
    corrected = sample(maps, coords, "corrected")[0]
    torch.testing.assert_close(corrected[0], torch.tensor([[0.0, 4.0], [3.0, 1.5]]))  # columns
    torch.testing.assert_close(corrected[1], torch.tensor([[0.0, 2.0], [1.0, 4.0]]))  # rows
    released = sample(maps, coords, "released")[0]
    torch.testing.assert_close(released[0], torch.tensor([[0.0, 3.0], [4.0, 1.5]]))
    torch.testing.assert_close(released[1], torch.tensor([[0.0, 1.0], [2.0, 4.0]]))
    far = sample(maps, torch.tensor([[[[3.0, -2.0]]]]), "corrected")[0, :, 0, 0]
    assert far.tolist() == [4.0, 0.0]  # border padding: outside reads the nearest edge


def test_random_coords_range_and_seed():
    a = random_coords(3, 5, generator=torch.Generator().manual_seed(1))
    b = random_coords(3, 5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 5, 5, 2) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1


def test_fps_finds_a_small_near_object_that_random_points_miss():
    """Why FPS: a 2×2 object at depth 40 in front of a wall at depth 200 (16×16 grid, k = 2).
    From cell 0 on the wall (X = Y = −200, Z = −1000) the object's cells are ≈ 850 away (Z
    differs by 800), the far corner of the wall only ≈ 530: FPS's second point is on the
    object. Sixteen random cells of 256 hit its 4 cells 16·4/256 = 0.25 times on average."""
    depth = torch.full((1, 1, 16, 16), 200.0)
    depth[..., 7:9, 7:9] = 40.0
    inds = farthest_point_indices(depth_to_points(depth, "corrected"), 16)[0].tolist()
    on_object = [7 <= i // 16 <= 8 and 7 <= i % 16 <= 8 for i in inds]
    assert inds[0] == 0 and on_object[1]
    assert 1 <= sum(on_object) <= 4 and sum(on_object) > 16 * 4 / 256
    # then the wall's corners: (15, 15) is the farthest from cell 0 and the object
    assert inds[2] == 255


def test_fps_of_one_and_two_points():
    """One point: cell 0 (as an index, int64). Two: cell 0 and the cell farthest from it."""
    depth = torch.full((1, 1, 4, 4), 100.0)
    depth[0, 0, 2, 1] = 10.0  # near: far from cell 0 in 3D
    pts = depth_to_points(depth, "corrected")
    one = farthest_point_indices(pts, 1)
    assert one.tolist() == [[0]] and one.dtype == torch.long
    assert farthest_point_indices(pts, 2).tolist() == [[0, 2 * 4 + 1]]


def test_normalized_depth_stretches_each_map_and_one_depth_map_takes_the_first():
    depth = torch.stack([torch.linspace(2, 4, 16).view(1, 4, 4),
                         torch.linspace(10, 50, 16).view(1, 4, 4)])  # (2,1,4,4)
    out = normalized_depth(depth, (2, 2))
    assert out.shape == (2, 1, 2, 2)
    for m in out:  # each map on its own: its nearest cell 0, its farthest 1
        assert m.min().item() == 0 and m.max().item() == pytest.approx(1)
    assert torch.equal(one_depth_map(depth), depth[:1])
    short = normalized_depth(torch.linspace(0.2, 0.6, 16).view(1, 1, 4, 4), (2, 2))
    assert short.min() == 0 and short.max() == pytest.approx(1)  # a range below 1 stretches too
    assert one_depth_map(np.ones((3, 5))).shape == (1, 1, 3, 5)


def test_too_many_points_for_the_grid_is_a_depthg_error():
    with pytest.raises(DepthGError, match=r"5×5 = 25 points on a 4×4 feature grid \(16 cells\); "
                                          "use n ≤ 4"):
        fps_coords(torch.rand(2, 1, 28, 28), (4, 4), 5)  # 25 points on 16 cells


# ----------------------------------------------------------------- chapter 04 figures

def test_read_positions_show_the_released_mirror(d_fps):
    from depthg_lib.sampling import fps_cells, read_positions

    depth = torch.from_numpy(d_fps["depth"][:1])
    chosen = fps_cells(depth, (28, 28), 9, "released")
    assert chosen.tolist()[:2] == [[0, 0], [503 // 28, 503 % 28]]  # golden selection order
    assert np.array_equal(fps_cells(depth, (28, 28), 9), chosen)  # released by default
    assert not np.array_equal(fps_cells(depth, (28, 28), 9, "corrected"), chosen)
    released = read_positions(fps_coords(depth, (28, 28), 9, "released"), (28, 28))
    corrected = read_positions(fps_coords(depth, (28, 28), 9, "corrected"), (28, 28))
    # released reads (col/w·27, row/h·27) for a chosen (row, col): mirrored, slightly off
    chosen_set = {tuple(c) for c in chosen.tolist()}
    mirrored = {(round(c / 28 * 27, 4), round(r / 28 * 27, 4)) for r, c in chosen_set}
    assert {tuple(np.round(p, 4)) for p in released} == mirrored
    assert np.allclose(corrected, fps_cells(depth, (28, 28), 9, "corrected"), atol=1e-5)


def test_method_figures_draw(d_fps):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from depthg_lib.viz.method import (
        correlation_to_point,
        depth_similarity_to_point,
        plot_correlations,
        plot_depth_correlation,
        plot_sampling,
    )

    depth = d_fps["depth"][2, 0]  # two planes at depth 40 and 200
    gen = torch.Generator().manual_seed(0)
    feats, codes = torch.randn(16, 14, 14, generator=gen), torch.randn(8, 14, 14, generator=gen)
    f_row = correlation_to_point(feats, (3, 4))
    assert f_row.shape == (14, 14) and f_row[3, 4] == pytest.approx(1.0)
    corrected, released = depth_similarity_to_point(depth, (14, 14), (0, 0))
    assert set(np.unique(corrected).round(6)) == {0.0, 1.0}  # planes: same or opposite
    assert (released == 1).all()
    image = np.zeros((28, 28, 3), dtype=np.uint8)
    figs = [plot_sampling(depth, (14, 14), 5, image=image),
            plot_correlations(feats, codes, (3, 4), depth=depth, image=image),
            plot_depth_correlation(depth, (14, 14), 6)]
    shown = {ax.get_title(): ax for fig in figs for ax in fig.axes}
    # the maps drawn are the numbers: F and C of the query point
    np.testing.assert_allclose(shown["F: features, a → a"].images[0].get_array(), f_row)
    np.testing.assert_allclose(shown["C: codes, a → a"].images[0].get_array(),
                               correlation_to_point(codes, (3, 4)))
    np.testing.assert_allclose(shown["D corrected: 1 − |d̂_q − d̂|"].images[0].get_array(),
                               corrected)
    # the 36 points' D, sorted by depth: released all 1; corrected 1 − |d̂_p − d̂_q|
    assert (shown["D released"].images[0].get_array() == 1).all()
    d_cor = np.asarray(shown["D corrected"].images[0].get_array(), dtype=np.float64)
    above = 1 - d_cor[0]  # each point's d̂ above the nearest point's, in the order drawn
    assert (np.diff(above) >= -1e-6).all()  # sorted by depth
    np.testing.assert_allclose(d_cor, 1 - np.abs(above[:, None] - above[None, :]), atol=1e-6)
    assert d_cor.min() == 0 and (d_cor[:4, :4] == 1).all()  # both planes, 0 between them
    points = shown["depth and the 6×6 sample points"].collections[0].get_offsets()
    assert len(points) == 36
    for fig in figs:
        plt.close(fig)
