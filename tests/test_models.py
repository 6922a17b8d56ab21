import pytest
import torch

from polypseg.errors import InputError
from polypseg.models import available_models, build_model, nearest_valid_size

MODELS = available_models()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("bilinear", [False, True])
def test_forward_shape_and_backward(name: str, bilinear: bool) -> None:
    torch.manual_seed(0)
    model = build_model(name, base=4, depth=3, bilinear=bilinear)
    x = torch.randn(2, 3, 48, 64, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 1, 48, 64)
    out.mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", MODELS)
def test_bad_input_size_names_nearest_valid(name: str) -> None:
    model = build_model(name, base=4, depth=4)
    with pytest.raises(ValueError, match=r"100x100 is not divisible by 2\*\*depth = 16.*96x96"):
        model(torch.zeros(1, 3, 100, 100))
    with pytest.raises(ValueError, match="expected a"):
        model(torch.zeros(3, 64, 64))


@pytest.mark.parametrize("name", MODELS)
def test_save_load_roundtrip(name: str, tmp_path) -> None:
    torch.manual_seed(1)
    a = build_model(name, base=4, depth=2).eval()
    torch.save(a.state_dict(), tmp_path / "w.pt")
    b = build_model(name, base=4, depth=2).eval()
    b.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", MODELS)
def test_deep_supervision_outputs(name: str) -> None:
    model = build_model(name, base=4, depth=4, deep_supervision=True)
    x = torch.randn(2, 3, 64, 64)
    outs = model.train()(x)
    assert isinstance(outs, list) and len(outs) == 4
    assert all(o.shape == (2, 1, 64, 64) for o in outs)
    assert model.eval()(x).shape == (2, 1, 64, 64)


def test_attention_gates_present_and_bounded() -> None:
    model = build_model("attention_unet", base=4, depth=3).eval()
    model(torch.randn(1, 3, 32, 32))
    gates = [m for m in model.modules() if m.__class__.__name__ == "AttentionGate"]
    assert len(gates) == 3
    for g in gates:
        assert g.last_attention is not None
        assert float(g.last_attention.min()) >= 0 and float(g.last_attention.max()) <= 1
    plain = build_model("unet", base=4, depth=3)
    assert not any(m.__class__.__name__ == "AttentionGate" for m in plain.modules())


def test_unet_paper_widths() -> None:
    model = build_model("unet")  # defaults: base 64, depth 4 as in Ronneberger et al.
    widths = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(widths) == 1024
    n_params = sum(p.numel() for p in model.parameters())
    assert 30e6 < n_params < 32e6  # the classic U-Net has about 31 M parameters


def test_registry_errors() -> None:
    with pytest.raises(InputError, match="unet"):
        build_model("resnet")
    with pytest.raises(TypeError, match="valid"):
        build_model("unet", widht=3)
    with pytest.raises(ValueError, match="depth"):
        build_model("unet", depth=0)
    with pytest.raises(ValueError, match="dropout"):
        build_model("unet", dropout=1.5)


@pytest.mark.parametrize(("size", "depth", "expected"), [(100, 4, 96), (104, 4, 112), (8, 4, 16), (256, 4, 256)])
def test_nearest_valid_size(size: int, depth: int, expected: int) -> None:
    assert nearest_valid_size(size, depth) == expected
