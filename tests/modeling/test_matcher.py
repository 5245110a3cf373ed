import pytest
import torch

from maskrcnn.modeling.matcher import Matcher


def test_thresholds_assign_match_ignore_and_background():
    # rows: 2 ground truths, columns: 5 predictions
    quality = torch.tensor(
        [
            [0.9, 0.5, 0.1, 0.0, 0.69],
            [0.2, 0.6, 0.2, 0.75, 0.3],
        ]
    )
    matches = Matcher(0.7, 0.3)(quality)
    assert matches.dtype == torch.int64
    assert matches.tolist() == [0, Matcher.BETWEEN_THRESHOLDS, Matcher.BELOW_LOW_THRESHOLD, 1, Matcher.BETWEEN_THRESHOLDS]
    assert Matcher.BELOW_LOW_THRESHOLD == -1 and Matcher.BETWEEN_THRESHOLDS == -2


def test_thresholds_are_inclusive_at_the_boundaries():
    quality = torch.tensor([[0.7, 0.3, 0.2999]])
    assert Matcher(0.7, 0.3)(quality).tolist() == [0, -2, -1]


def test_low_quality_matches_give_each_gt_its_best_predictions_including_ties():
    quality = torch.tensor(
        [
            [0.4, 0.4, 0.1, 0.0],  # best 0.4, shared by predictions 0 and 1
            [0.0, 0.35, 0.2, 0.1],  # best 0.35 at prediction 1, but prediction 1 prefers gt 0
            [0.0, 0.0, 0.0, 0.8],
        ]
    )
    assert Matcher(0.7, 0.3)(quality).tolist() == [-2, -2, -1, 2]
    assert Matcher(0.7, 0.5)(quality).tolist() == [-1, -1, -1, 2]
    low_quality = Matcher(0.7, 0.5, allow_low_quality_matches=True)(quality)
    # predictions 0 and 1 are the best for gt 0 (tie): they get back their argmax (gt 0);
    # gt 1's best prediction (1) keeps its own argmax, gt 0
    assert low_quality.tolist() == [0, 0, -1, 2]


def test_empty_ground_truth_means_background_by_default():
    quality = torch.zeros(0, 6)
    matches = Matcher(0.7, 0.3, allow_low_quality_matches=True)(quality)
    assert matches.tolist() == [Matcher.BELOW_LOW_THRESHOLD] * 6
    assert matches.dtype == torch.int64


def test_no_predictions_gives_an_empty_result():
    matches = Matcher(0.7, 0.3)(torch.zeros(3, 0))
    assert matches.shape == (0,)


def test_empty_inputs_can_raise_as_maskrcnn_benchmark():
    matcher = Matcher(0.7, 0.3, allow_empty_gt=False)
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        matcher(torch.zeros(0, 4))
    with pytest.raises(ValueError, match="No proposal boxes"):
        matcher(torch.zeros(2, 0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="low_threshold"):
        Matcher(0.3, 0.7)
    with pytest.raises(ValueError, match="match_quality_matrix"):
        Matcher(0.7, 0.3)(torch.zeros(3))


def test_input_is_not_modified():
    quality = torch.tensor([[0.9, 0.1], [0.2, 0.4]])
    before = quality.clone()
    Matcher(0.7, 0.3, allow_low_quality_matches=True)(quality)
    assert torch.equal(quality, before)
