"""Issue 19 item 6: the built-in losses name the model's output size against the classes or targets."""
import pytest
import torch

from learnkit import BCEWithLogitsLossFlat, CrossEntropyLossFlat, L1LossFlat, MSELossFlat


def test_cross_entropy_too_few_outputs_names_n_out():
    with pytest.raises(ValueError, match=r"outputs 3 values per item but the targets have 5 classes \(max target 4"
                                         r".*n_out=5"):
        CrossEntropyLossFlat()(torch.randn(8, 3), torch.tensor([0, 1, 2, 4, 0, 1, 2, 3]))


def test_cross_entropy_one_hot_targets_say_which_loss():
    with pytest.raises(ValueError, match=r"does not fit target shape \(8, 3\).*BCEWithLogitsLossFlat"):
        CrossEntropyLossFlat()(torch.randn(8, 3), torch.zeros(8, 3))


@pytest.mark.parametrize("loss", [MSELossFlat(), L1LossFlat()])
def test_regression_output_size_against_targets(loss):
    with pytest.raises(ValueError, match=r"outputs 1 values per item but the targets have 2 targets.*n_out=2"):
        loss(torch.randn(8, 1), torch.randn(8, 2))
    with pytest.raises(ValueError, match="returned 4 items but the batch has 8"):
        loss(torch.randn(4, 2), torch.randn(8, 1))
    assert loss(torch.randn(8, 1), torch.randn(8)).shape == ()  # [B, 1] against [B] still works


def test_bce_output_size_against_labels():
    with pytest.raises(ValueError, match=r"outputs 3 values per item but the targets have 5 labels.*n_out=5"):
        BCEWithLogitsLossFlat()(torch.randn(8, 3), torch.zeros(8, 5))


def test_correct_shapes_unchanged():
    assert CrossEntropyLossFlat()(torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))).isfinite()
    assert CrossEntropyLossFlat(ignore_index=255)(torch.randn(2, 3), torch.tensor([1, 255])).isfinite()
