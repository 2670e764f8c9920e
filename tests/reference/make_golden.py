"""Write the golden files of the C++ parity tests (tests/data/golden_*.safetensors) and the
fixture of the vitiq-predict test (tests/data/predict_tiny.*).

Run from the repository root with Debian's interpreter (it has torch):
    /usr/bin/python3 tests/reference/make_golden.py
Everything is computed in float64 from float32-representable weights and inputs; see README.md
in this folder for the tensor schema.
"""
import json
import os
import struct
import sys
import zlib

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402
import vit_reference as ref  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
BATCH, STEPS = 4, 10
ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)

CONFIGS = {
    "tiny": ref.PRESETS["tiny"],
    "diag_perhead": dict(image_size=16, patch_size=4, channels=3, dim=24, depth=2, heads=3, dim_head=8, mlp_dim=48,
                         num_classes=5, spt="diagonal", lsa=True, temperature="per_head", pool="mean"),
    "none_shared": dict(image_size=16, patch_size=4, channels=3, dim=16, depth=2, heads=2, dim_head=8, mlp_dim=32,
                        num_classes=5, spt="none", lsa=True, temperature="shared_log", pool="cls"),
    "mhsa": dict(image_size=16, patch_size=4, channels=3, dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32,
                 num_classes=5, spt="axial", lsa=False, temperature="shared_log", pool="cls"),
    "odd": dict(image_size=12, patch_size=2, channels=3, dim=12, depth=2, heads=3, dim_head=4, mlp_dim=20,
                num_classes=5, spt="axial", lsa=True, temperature="shared_log", pool="mean"),
}


def make_model(cfg, seed):
    """Default init in float32, LayerNorms perturbed so their gradients are tested off w=1, b=0."""
    torch.manual_seed(seed)
    model = ref.ViT(cfg)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.add_(0.1 * torch.randn_like(module.weight))
                module.bias.copy_(0.1 * torch.randn_like(module.bias))
    return model


def golden(name, cfg, seed):
    model = make_model(cfg, seed)
    x = torch.randn(BATCH, cfg["channels"], cfg["image_size"], cfg["image_size"]).double()
    votes = torch.randint(1, 6, (BATCH,)).double()
    model = model.double()
    target = ref.gaussian_soft_labels(votes, cfg["num_classes"])
    out = {"input": x, "votes": votes, "target": target}
    for n, p in model.state_dict().items():
        out["param." + n] = p.clone()
    logits, attn = model(x, return_attention=True)
    loss = ref.soft_cross_entropy(logits, target)
    model.zero_grad()
    loss.backward()
    out["logits"] = logits.detach()
    out["loss"] = loss.detach().reshape([])
    for n, p in model.named_parameters():
        out["grad." + n] = p.grad.detach().clone()
    for l, a in enumerate(attn):
        out[f"attn.{l}"] = a.detach()
    decay = set(ref.decay_parameter_names(model))
    groups = [{"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": ADAMW["weight_decay"]},
              {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"])
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        l = ref.soft_cross_entropy(model(x), target)
        losses.append(l.item())
        l.backward()
        opt.step()
    out["train.loss"] = torch.tensor(losses, dtype=torch.float64)
    for n, p in model.state_dict().items():
        out["final." + n] = p.clone()
    md = ref.config_to_metadata(cfg)
    md.update({"lr": repr(ADAMW["lr"]), "beta1": repr(ADAMW["betas"][0]), "beta2": repr(ADAMW["betas"][1]),
               "eps": repr(ADAMW["eps"]), "weight_decay": repr(ADAMW["weight_decay"]), "steps": str(STEPS),
               "batch": str(BATCH), "generator": "tests/reference/make_golden.py", "torch_version": torch.__version__})
    path = os.path.join(DATA, f"golden_{name}.safetensors")
    safetensors_io.save_file(out, path, md)
    print(f"{path}: {os.path.getsize(path)} bytes, loss {loss.item():.6f}, 10-step loss {losses[-1]:.6f}")


def write_png(path, img):
    """img: uint8 tensor [H, W, 3] -> an RGB PNG (no filter), written by hand with zlib."""
    H, W, _ = img.shape
    raw = b"".join(b"\x00" + bytes(img[r].flatten().tolist()) for r in range(H))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def test_image(H, W, seed):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    rgb = torch.stack([0.5 + 0.4 * torch.sin(6 * xx + 2 * yy), 0.5 + 0.4 * torch.cos(5 * yy), xx * yy], dim=-1)
    rgb = rgb + 0.08 * torch.randn(H, W, 3, generator=g)
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)


def predict_fixture():
    cfg = ref.PRESETS["tiny"]
    model = make_model(cfg, 1234)
    safetensors_io.save_file({n: p.float() for n, p in model.state_dict().items()},
                        os.path.join(DATA, "predict_tiny.safetensors"), ref.config_to_metadata(cfg))
    model = model.double().eval()
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(3, 1, 1)
    expected = {}
    for name, (H, W) in {"predict_tiny.png": (32, 32), "predict_tiny_resize.png": (40, 48)}.items():
        img = test_image(H, W, 7 + H)
        write_png(os.path.join(DATA, name), img)
        x = img.permute(2, 0, 1).float() / 255.0  # as the C++ side: float32 pixel / 255
        if (H, W) != (32, 32):
            x = F.interpolate(x[None], size=(32, 32), mode="bilinear", align_corners=False, antialias=False)[0]
        x = (x.double() - mean) / std
        with torch.no_grad():
            logits = model(x[None])[0]
        probs = torch.softmax(logits, dim=-1)
        expected[name] = {"logits": logits.tolist(), "probabilities": probs.tolist(),
                          "class": int(probs.argmax()) + 1, "expected_vote": float(ref.expected_vote(probs))}
    with open(os.path.join(DATA, "predict_tiny_expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print("predict fixture written")


def main():
    os.makedirs(DATA, exist_ok=True)
    for i, (name, cfg) in enumerate(CONFIGS.items()):
        golden(name, cfg, 100 + i)
    predict_fixture()


if __name__ == "__main__":
    main()
