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


def test_resunet_has_residual_strided_stages_with_resenc_block_counts() -> None:
    from polypseg.models.resunet import ResidualBlock, default_blocks

    assert default_blocks(4) == (1, 3, 4, 6, 6) and default_blocks(2) == (1, 3, 4)
    model = build_model("resunet", base=4, depth=4)
    stages = [model.stem[-1], *model.downs]
    assert [sum(isinstance(m, ResidualBlock) for m in s) for s in stages] == [1, 3, 4, 6, 6]
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())  # strided convs down-sample
    assert [s[0].body[0].stride for s in model.downs] == [(2, 2)] * 4
    x = torch.randn(1, 3, 64, 64)
    block = model.downs[0][1]  # a same-width block: its shortcut is the identity
    assert isinstance(block.skip, torch.nn.Identity)
    with torch.no_grad():
        for p in block.body.parameters():
            p.zero_()  # the residual branch off: the block is ReLU(input), as a residual block must be
        h = torch.relu(torch.randn(1, 8, 16, 16))
        assert torch.equal(block(h), h)
    assert model(x).shape == (1, 1, 64, 64)
    small = build_model("resunet", base=4, depth=2, blocks=[1, 1, 2])
    assert [sum(isinstance(m, ResidualBlock) for m in s) for s in [small.stem[-1], *small.downs]] == [1, 1, 2]
    with pytest.raises(ValueError, match="3 positive integers"):
        build_model("resunet", base=4, depth=2, blocks=[1, 1])
    with pytest.raises(TypeError, match="valid"):
        build_model("unet", blocks=[1, 1, 1, 1, 1])  # only the residual model takes blocks
