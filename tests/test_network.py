import pytest
import torch

from dipstop.fitting import padding_for
from dipstop.network import skip_network


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_paper_width_has_about_2_2m_parameters():
    assert 2_150_000 < n_params(skip_network(3, 128)) < 2_250_000


def test_parameter_count_matches_the_design_layer_by_layer():
    # per level: skip 1x1 conv + BN, two 3x3 convs down + BNs, join BN, 3x3 + 1x1 convs + BNs
    def level(c_in: int, w: int) -> int:
        skip = c_in * 4 + 4 + 2 * 4
        down = (c_in * 9 * w + w) + 2 * w + (w * 9 * w + w) + 2 * w
        join = 2 * (4 + w) + ((4 + w) * 9 * w + w) + 2 * w + (w * w + w) + 2 * w
        return skip + down + join

    w = 64
    expected = level(32, w) + 4 * level(w, w) + (w * 3 + 3)
    assert n_params(skip_network(3, w)) == expected


def test_output_is_in_unit_range_with_the_input_size_and_channels():
    net = skip_network(1, 16)
    with torch.no_grad():
        y = net(torch.rand(2, 32, 64, 96))
    assert y.shape == (2, 1, 64, 96)
    assert float(y.min()) >= 0 and float(y.max()) <= 1


def test_five_downsampling_convolutions_with_reflection_padding():
    net = skip_network(3, 16)
    strided = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == 5
    assert all(
        m.padding == (0, 0) and m.bias is not None
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d)
    )
    assert any(isinstance(m, torch.nn.ReflectionPad2d) for m in net.modules())


@pytest.mark.parametrize("scales", [1, 3])
def test_scales_sets_the_downsampling_depth_and_keeps_the_size(scales):
    net = skip_network(3, 8, input_depth=4, scales=scales)
    strided = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == scales
    with torch.no_grad():
        assert net(torch.rand(1, 4, 37, 50)).shape == (1, 3, 37, 50)


def test_zero_scales_is_refused():
    with pytest.raises(ValueError, match="scales"):
        skip_network(3, 8, scales=0)


@pytest.mark.parametrize("h, w", [(64, 64), (33, 100), (481, 321), (32, 32)])
def test_only_sides_under_64_are_padded_and_only_up_to_64(h, w):
    left, right, top, bottom = padding_for(h, w)
    for side, a, b in ((h, top, bottom), (w, left, right)):
        assert side + a + b == max(side, 64) and a < side and b < side and 0 <= b - a <= 1


@pytest.mark.parametrize("h, w", [(65, 97), (481, 321), (100, 64), (77, 131)])
def test_any_size_runs_unpadded_and_keeps_its_size(h, w):
    """Odd sides come back one pixel longer from each upsampling; the joins crop them."""
    net = skip_network(3, 8)
    with torch.no_grad():
        y = net(torch.rand(1, 32, h, w))
    assert y.shape == (1, 3, h, w)


def test_a_multiple_of_32_runs_exactly_as_before():
    """At sides that are multiples of 32 nothing is cropped: the calibrated 128 x 128 crops
    give the same outputs as the network did before odd sides were supported."""
    torch.manual_seed(0)
    net = skip_network(3, 8)
    z = torch.rand(1, 32, 128, 96)
    with torch.no_grad():
        cropped = net(z)
        for level in [m for m in net.modules() if type(m).__name__ == "_Level"]:
            level.forward = lambda x, lv=level: lv.join(torch.cat([lv.skip(x), lv.deeper(x)], 1))
        plain = net(z)
    assert torch.equal(cropped, plain)
