import pytest
import torch

from ltbench.errors import LtbenchError
from ltbench.models import MODELS, build_model

SMALL = {"small-cnn": {"width": 4}, "resnet18": {"width": 4}, "preact-resnet18": {"width": 4},
         "wrn-34-10": {"depth": 10, "widen": 1}}


def test_registry_has_the_zoo():
    assert {"small-cnn", "resnet18", "preact-resnet18", "wrn-34-10", "wrn-28-10"} <= set(MODELS.names())


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("channels", [1, 3])
def test_features_head_split(name, channels):
    torch.manual_seed(0)
    model = build_model(name, 7, channels, (0.5,) * channels, (0.25,) * channels, **SMALL[name]).eval()
    x = torch.rand(3, channels, 32, 32)
    f = model.features(x)
    assert f.shape == (3, model.feature_dim)
    out = model(x)
    assert out.shape == (3, 7)
    torch.testing.assert_close(out, model.head(f))


def test_normalisation_is_inside_the_model():
    torch.manual_seed(0)
    a = build_model("small-cnn", 10, 1, (0.0,), (1.0,), width=4).eval()
    b = build_model("small-cnn", 10, 1, (0.5,), (0.25,), width=4).eval()
    b.load_state_dict(a.state_dict(), strict=False)
    b.normalize.mean.fill_(0.5)
    b.normalize.std.fill_(0.25)
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(b(x), a((x - 0.5) / 0.25))


def test_full_size_models_have_their_published_size():
    n = sum(p.numel() for p in build_model("resnet18", 10, 3, (0.5,), (0.5,)).parameters())
    assert 11.0e6 < n < 11.3e6  # ResNet-18 (CIFAR stem): 11.17 M parameters
    n = sum(p.numel() for p in build_model("wrn-34-10", 10, 3, (0.5,), (0.5,)).parameters())
    assert 46.0e6 < n < 46.3e6  # WRN-34-10: 46.16 M parameters
    model = build_model("wrn-28-10", 10, 3, (0.5,), (0.5,))
    n = sum(p.numel() for p in model.parameters())
    assert 36.4e6 < n < 36.6e6  # WRN-28-10: 36.48 M parameters
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 1 + 12 * 2 + 3  # stem, 12 blocks, shortcuts


def test_unknown_model_lists_known():
    with pytest.raises(LtbenchError, match="known models: .*resnet18"):
        build_model("resnet-9000", 10, 3, (0.5,), (0.5,))
