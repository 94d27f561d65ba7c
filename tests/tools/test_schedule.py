"""tools/schedule.py: epochs to iterations, and mmdetection's RFS epoch length sum_I ceil(r(I))."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import schedule  # noqa: E402


def images(*category_sets):
    return [{"annotations": [{"category_id": c} for c in cats]} for cats in category_sets]


def test_iterations_round_to_the_nearest_halves_up():
    assert schedule.iterations(12, 99_388, 16) == 74_541  # exact
    assert schedule.iterations(11, 99_388, 16) == 68_329  # 68,329.25
    assert schedule.iterations(22, 99_388, 16) == 136_659  # 136,658.5
    assert schedule.schedule(24, (16, 22), 56_740, 16) == (85_110, (56_740, 78_018))


def test_mmdet_rfs_epoch_is_the_sum_of_the_ceiled_image_factors():
    # 8 images; class 1 in all 8 (f = 1), class 2 in 2 (f = 1/4), class 3 in 1 (f = 1/8).
    # t = 1/2: r(1) = 1, r(2) = sqrt(2) = 1.41 -> ceil 2, r(3) = sqrt(4) = 2 -> ceil 2 (exactly 2:
    # not 3). Images: {1,3}: 2, {1,2}: 2, {1,2}: 2, five {1}: 1 each -> 2 + 2 + 2 + 5 = 11.
    dicts = images({1, 3}, {1, 2}, {1, 2}, {1}, {1}, {1}, {1}, {1})
    assert schedule.mmdet_rfs_epoch_images(dicts, 0.5) == 11
    # linear factors: r(2) = 2, r(3) = 4 -> 4 + 2 + 2 + 5 = 13
    assert schedule.mmdet_rfs_epoch_images(dicts, 0.5, sqrt=False) == 13
    # t below every frequency: no repeats, the epoch is the N images
    assert schedule.mmdet_rfs_epoch_images(dicts, 0.1) == 8


def test_tool_prints_the_overrides_for_a_config(tiny_dataset_root, capsys):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = os.path.join(repo, "configs", "demo", "mask_rcnn_R_18_FPN_synthetic_lt.yaml")
    schedule.main(["--config-file", config, "--epochs", "2", "--steps", "1", "--epoch-images", "plain",
                   "SOLVER.IMS_PER_BATCH", "4"])
    out = capsys.readouterr().out
    n = int(out.split("N = ")[1].split()[0])
    assert f"SOLVER.MAX_ITER {int(2 * n / 4 + 0.5)} " in out and f"({int(n / 4 + 0.5)},)" in out
