import pytest
import torch

from maskrcnn.structures.image_list import ImageList, to_image_list


def test_list_of_images_is_zero_padded_to_the_largest():
    first = torch.rand(3, 5, 7) + 1
    second = torch.rand(3, 8, 4) + 1
    images = to_image_list([first, second])
    assert images.tensors.shape == (2, 3, 8, 7)
    assert images.image_sizes == [(5, 7), (8, 4)]
    assert torch.equal(images.tensors[0, :, :5, :7], first) and images.tensors[0, :, 5:].abs().sum() == 0
    assert torch.equal(images.tensors[1, :, :8, :4], second) and images.tensors[1, :, :, 4:].abs().sum() == 0


@pytest.mark.parametrize("divisor, expected", [(4, (16, 8)), (32, (32, 32)), (7, (14, 7)), (1, (13, 6))])
def test_size_divisible_rounds_up(divisor, expected):
    images = to_image_list([torch.ones(3, 13, 5), torch.ones(3, 2, 6)], size_divisible=divisor)
    assert tuple(images.tensors.shape[-2:]) == expected
    assert images.image_sizes == [(13, 5), (2, 6)]
    assert images.tensors.sum() == 3 * (13 * 5 + 2 * 6)


def test_tensor_inputs():
    single = torch.rand(3, 10, 12)
    images = to_image_list(single)
    assert images.tensors.shape == (1, 3, 10, 12) and images.image_sizes == [(10, 12)]
    batch = torch.rand(2, 3, 10, 12)
    assert to_image_list(batch).tensors is batch
    padded = to_image_list(batch, size_divisible=8)
    assert padded.tensors.shape == (2, 3, 16, 16) and padded.image_sizes == [(10, 12), (10, 12)]
    assert torch.equal(padded.tensors[:, :, :10, :12], batch)
    assert to_image_list(images) is images


def test_to_keeps_sizes():
    images = to_image_list([torch.ones(3, 4, 4)])
    moved = images.to(torch.float64)
    assert isinstance(moved, ImageList) and moved.tensors.dtype == torch.float64
    assert moved.image_sizes == images.image_sizes and len(moved) == 1


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"got shape \[4, 4\]"):
        to_image_list(torch.ones(4, 4))
    with pytest.raises(ValueError, match="empty list"):
        to_image_list([])
    with pytest.raises(ValueError, match="different channel counts"):
        to_image_list([torch.ones(3, 4, 4), torch.ones(1, 4, 4)])
    with pytest.raises(ValueError, match=r"image 1 must be a tensor \[C, H, W\], got \[4, 4\]"):
        to_image_list([torch.ones(3, 4, 4), torch.ones(4, 4)])
    with pytest.raises(TypeError, match="unsupported type"):
        to_image_list("images")
    with pytest.raises(ValueError, match="image_sizes has 1 entries but tensors holds 2"):
        ImageList(torch.ones(2, 3, 4, 4), [(4, 4)])
