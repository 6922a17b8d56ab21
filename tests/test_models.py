import pytest
import torch

from polypseg.errors import InputError
from polypseg.models import available_models, build_model, nearest_valid_size

MODELS = available_models()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("bilinear", [False, True])
@pytest.mark.parametrize("stem_stride", [1, 2])
def test_forward_shape_and_backward(name: str, bilinear: bool, stem_stride: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, base=4, depth=3, bilinear=bilinear, stem_stride=stem_stride)
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
    with pytest.raises(ValueError, match=r"100x100 is not divisible by stem_stride \* 2\*\*depth = 16.*96x96"):
        model(torch.zeros(1, 3, 100, 100))
    strided = build_model(name, base=4, depth=4, stem_stride=2)
    with pytest.raises(ValueError, match=r"80x80 is not divisible by stem_stride \* 2\*\*depth = 32.*96x96"):
        strided(torch.zeros(1, 3, 80, 80))
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
@pytest.mark.parametrize("stem_stride", [1, 2])
def test_deep_supervision_outputs(name: str, stem_stride: int) -> None:
    model = build_model(name, base=4, depth=4, deep_supervision=True, stem_stride=stem_stride)
    x = torch.randn(2, 3, 64, 64)
    outs = model.train()(x)
    assert isinstance(outs, list) and len(outs) == 4
    assert all(o.shape == (2, 1, 64, 64) for o in outs)
    assert model.eval()(x).shape == (2, 1, 64, 64)


@pytest.mark.parametrize("name", MODELS)
def test_strided_stem_runs_every_level_at_half_resolution(name: str) -> None:
    """stem_stride 2: the stem's output and so every level below it is at half the input size, the
    convolution work is about a quarter (same widths), and the logits come back at the input size."""

    def conv_macs(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, tuple[int, ...]]:
        macs: list[int] = []

        def count(m: torch.nn.Module, _inp: tuple, out: torch.Tensor) -> None:
            k = m.weight.shape  # conv: (out, in/groups, kh, kw); transposed: (in, out/groups, kh, kw)
            per_output = k[1] * k[2] * k[3] if isinstance(m, torch.nn.Conv2d) else k[0] * k[2] * k[3] // 4
            macs.append(out.numel() * per_output)

        hooks = [m.register_forward_hook(count) for m in model.modules()
                 if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]  # fmt: skip
        stem_out: list[tuple[int, ...]] = []
        hooks.append(model.stem.register_forward_hook(lambda m, i, o: stem_out.append(tuple(o.shape))))
        with torch.no_grad():
            assert model(x).shape == (1, 1, 64, 96)
        for h in hooks:
            h.remove()
        return sum(macs), stem_out[0]

    x = torch.randn(1, 3, 64, 96)
    full, full_stem = conv_macs(build_model(name, base=8, depth=3).eval(), x)
    half, half_stem = conv_macs(build_model(name, base=8, depth=3, stem_stride=2).eval(), x)
    assert full_stem == (1, 8, 64, 96) and half_stem == (1, 8, 32, 48)
    assert 0.2 < half / full < 0.3


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


@pytest.mark.parametrize(("size", "step", "expected"), [(100, 16, 96), (104, 16, 112), (8, 16, 16), (256, 16, 256),
                                                       (200, 32, 192), (208, 32, 224)])  # fmt: skip
def test_nearest_valid_size(size: int, step: int, expected: int) -> None:
    assert nearest_valid_size(size, step) == expected


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
