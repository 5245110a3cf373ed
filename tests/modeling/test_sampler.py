import pytest
import torch

from maskrcnn.modeling.balanced_positive_negative_sampler import BalancedPositiveNegativeSampler
from maskrcnn.modeling.utils import cat


def _labels(num_pos, num_neg, num_ignored):
    labels = torch.cat([torch.ones(num_pos), torch.zeros(num_neg), -torch.ones(num_ignored)])
    return labels[torch.randperm(labels.numel())]


def _check_masks(labels, pos, neg, expected_pos, expected_neg):
    assert pos.dtype == torch.bool and neg.dtype == torch.bool
    assert pos.shape == labels.shape and neg.shape == labels.shape
    assert int(pos.sum()) == expected_pos
    assert int(neg.sum()) == expected_neg
    assert not (pos & neg).any()
    assert (labels[pos] >= 1).all()
    assert (labels[neg] == 0).all()


def test_positive_fraction_caps_positives_and_negatives_fill_the_rest():
    labels = _labels(10, 100, 30)
    pos, neg = BalancedPositiveNegativeSampler(20, 0.25)([labels])
    _check_masks(labels, pos[0], neg[0], expected_pos=5, expected_neg=15)


def test_few_positives_leave_room_for_more_negatives():
    labels = _labels(2, 100, 5)
    pos, neg = BalancedPositiveNegativeSampler(20, 0.5)([labels])
    _check_masks(labels, pos[0], neg[0], expected_pos=2, expected_neg=18)


def test_few_negatives_are_all_taken_and_batch_may_be_short():
    labels = _labels(50, 3, 5)
    pos, neg = BalancedPositiveNegativeSampler(20, 0.5)([labels])
    _check_masks(labels, pos[0], neg[0], expected_pos=10, expected_neg=3)


def test_labels_above_one_count_as_positive_and_images_are_independent():
    first = torch.tensor([2, 3, 0, 0, -1, 5, 0])
    second = torch.tensor([-1, -1, 0])
    pos, neg = BalancedPositiveNegativeSampler(4, 0.5)([first, second])
    _check_masks(first, pos[0], neg[0], expected_pos=2, expected_neg=2)
    _check_masks(second, pos[1], neg[1], expected_pos=0, expected_neg=1)


def test_sampling_is_random_but_seeded():
    labels = _labels(40, 400, 0)
    sampler = BalancedPositiveNegativeSampler(64, 0.25)
    torch.manual_seed(3)
    first = sampler([labels])
    second = sampler([labels])
    torch.manual_seed(3)
    again = sampler([labels])
    assert not torch.equal(first[1][0], second[1][0])
    assert torch.equal(first[0][0], again[0][0]) and torch.equal(first[1][0], again[1][0])


def test_empty_image():
    pos, neg = BalancedPositiveNegativeSampler(8, 0.5)([torch.zeros(0)])
    assert pos[0].shape == (0,) and neg[0].shape == (0,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="positive_fraction"):
        BalancedPositiveNegativeSampler(8, 1.5)
    with pytest.raises(ValueError, match="batch_size_per_image"):
        BalancedPositiveNegativeSampler(-1, 0.5)


def test_cat_returns_a_single_tensor_itself():
    t = torch.arange(3)
    assert cat([t]) is t
    assert cat([t, t], dim=0).tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError):
        cat([])
