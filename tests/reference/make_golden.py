#!/usr/bin/python3
"""Write the golden files of tests/test_golden.cpp and the vitiq-predict fixture into tests/data/.

Run from the repository root with Debian's Python (torch 1.13, CPU):

    /usr/bin/python3 tests/reference/make_golden.py

Deterministic: every file is built from torch.manual_seed(<fixed seed of its config>). The schema
is described in tests/reference/README.md.
"""
import json
import math
import os
import struct
import sys
import tempfile
import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402
import vit_reference as vr  # noqa: E402

DATA = os.path.join(os.path.dirname(HERE), "data")
GENERATOR = "tests/reference/make_golden.py"

BATCH = 4
STEPS = 10
LR, BETA1, BETA2, EPS, WEIGHT_DECAY = 1e-3, 0.9, 0.999, 1e-8, 0.05

# name -> (seed, config)
CONFIGS = {
    "tiny": (1001, vr.make_config("tiny")),
    "diag_perhead": (1002, vr.make_config(image_size=16, patch_size=4, channels=3, dim=24, depth=2, heads=3,
                                          dim_head=8, mlp_dim=48, num_classes=5, spt="diagonal", lsa=True,
                                          temperature="per_head", pool="mean")),
    "none_shared": (1003, vr.make_config(image_size=16, patch_size=4, channels=3, dim=16, depth=2, heads=2,
                                         dim_head=8, mlp_dim=32, num_classes=5, spt="none", lsa=True,
                                         temperature="shared_log", pool="cls")),
    "mhsa": (1004, vr.make_config(image_size=16, patch_size=4, channels=3, dim=16, depth=1, heads=2,
                                  dim_head=8, mlp_dim=32, num_classes=5, spt="axial", lsa=False,
                                  temperature="shared_log", pool="cls")),
    "odd": (1005, vr.make_config(image_size=12, patch_size=2, channels=3, dim=12, depth=2, heads=3,
                                 dim_head=4, mlp_dim=20, num_classes=5, spt="axial", lsa=True,
                                 temperature="shared_log", pool="mean")),
}
PREDICT_SEED = 2001

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def perturbed_model(cfg):
    """Default init (float32) with every LayerNorm weight 1 + 0.1 randn and bias 0.1 randn."""
    model = vr.ViT(cfg)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.1 * torch.randn_like(m.weight))
                m.bias.copy_(0.1 * torch.randn_like(m.bias))
    return model


def param_groups(model):
    named = list(model.named_parameters())
    decay = set(vr.decay_parameter_names([n for n, _ in named]))
    return [{"params": [p for n, p in named if n in decay], "weight_decay": WEIGHT_DECAY},
            {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}]


def spec_order(model):
    """Parameter names in the order of SPEC.md's table (the file's tensor order)."""
    return list(vr.expected_shapes(model.cfg))


def f64(t):
    return t.detach().to(torch.float64).clone().contiguous()


def make_golden(name, seed, cfg):
    torch.manual_seed(seed)
    model = perturbed_model(cfg)
    model = model.double()
    model.train()  # every rate is 0: train and eval compute the same function
    C, S, K = cfg["channels"], cfg["image_size"], cfg["num_classes"]
    x = torch.randn(BATCH, C, S, S, dtype=torch.float32).double()
    votes = torch.randint(1, K + 1, (BATCH,)).double()
    target = vr.gaussian_soft_labels(votes, num_classes=K)

    names = spec_order(model)
    params = dict(model.named_parameters())
    assert sorted(names) == sorted(params) == sorted(model.state_dict())

    out = {"input": f64(x), "votes": f64(votes), "target": f64(target)}
    for n in names:
        out["param." + n] = f64(params[n])

    model.zero_grad()
    logits, attns = model(x, return_attention=True)
    loss = vr.soft_cross_entropy(logits, target)
    loss.backward()
    out["logits"] = f64(logits)
    out["loss"] = f64(loss).reshape(())
    for n in names:
        out["grad." + n] = f64(params[n].grad)
    for l, a in enumerate(attns):
        out[f"attn.{l}"] = f64(a)

    opt = torch.optim.AdamW(param_groups(model), lr=LR, betas=(BETA1, BETA2), eps=EPS)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        step_loss = vr.soft_cross_entropy(model(x), target)
        losses.append(step_loss.item())
        step_loss.backward()
        opt.step()
    assert losses[0] == loss.item()
    out["train.loss"] = torch.tensor(losses, dtype=torch.float64)
    for n in names:
        out["final." + n] = f64(params[n])

    md = vr.config_to_metadata(cfg)
    md.update({"lr": repr(LR), "beta1": repr(BETA1), "beta2": repr(BETA2), "eps": repr(EPS),
               "weight_decay": repr(WEIGHT_DECAY), "steps": str(STEPS), "batch": str(BATCH),
               "generator": GENERATOR, "torch_version": torch.__version__})
    path = os.path.join(DATA, f"golden_{name}.safetensors")
    safetensors_io.save_file(out, path, md)
    print(f"{path}: {len(out)} tensors, {os.path.getsize(path)} bytes, loss {losses[0]:.6f} -> {losses[-1]:.6f}")


# ---------------------------------------------------------------------------------------------
# PNG (8-bit RGB, no interlace) written and read with zlib + struct


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path, rgb):
    """rgb: uint8 tensor [H, W, 3]. Filter type 0 on every row."""
    assert rgb.dtype == torch.uint8 and rgb.dim() == 3 and rgb.shape[2] == 3
    H, W, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[i].contiguous().numpy().tobytes() for i in range(H))
    blob = (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(raw, 9))
            + _png_chunk(b"IEND", b""))
    _atomic_write(path, blob)


def read_png_rgb8(path):
    """Read back a PNG written by write_png (filter 0 only): uint8 [H, W, 3]."""
    with open(path, "rb") as f:
        blob = f.read()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, W, H = 8, b"", None, None
    while pos < len(blob):
        (n,) = struct.unpack(">I", blob[pos:pos + 4])
        kind, data = blob[pos + 4:pos + 8], blob[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            W, H, depth, ctype = struct.unpack(">IIBB", data[:10])
            assert depth == 8 and ctype == 2
        elif kind == b"IDAT":
            idat += data
    raw = zlib.decompress(idat)
    rows = []
    for i in range(H):
        row = raw[i * (3 * W + 1):(i + 1) * (3 * W + 1)]
        assert row[0] == 0
        rows.append(torch.tensor(list(row[1:]), dtype=torch.uint8).reshape(W, 3))
    return torch.stack(rows)


def _atomic_write(path, blob):
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=os.path.dirname(os.path.abspath(path)))
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def pattern_image(H, W, gen, phase=0.0):
    """A smooth colourful pattern plus uniform noise in [-12, 12], as uint8 [H, W, 3]."""
    i = torch.arange(H, dtype=torch.float64).reshape(H, 1) / H
    j = torch.arange(W, dtype=torch.float64).reshape(1, W) / W
    r = 0.5 + 0.45 * torch.sin(2 * math.pi * (1.3 * i + 0.4 * j + phase))
    g = 0.5 + 0.45 * torch.cos(2 * math.pi * (0.7 * j - 0.9 * i * j + 0.2 + 2 * phase))
    b = 0.5 + 0.45 * torch.sin(2 * math.pi * ((i - 0.5) ** 2 + (j - 0.4 - phase) ** 2) * 2.5)
    img = torch.stack([r, g, b], dim=-1) * 255.0
    noise = (torch.rand(H, W, 3, generator=gen, dtype=torch.float64) - 0.5) * 24.0
    return (img + noise).round().clamp(0, 255).to(torch.uint8)


def preprocess(rgb, size):
    """uint8 [H, W, 3] -> [1, 3, size, size] float64: /255, bilinear resize (align_corners=False,
    no antialias) unless already size x size, ImageNet normalisation."""
    x = rgb.to(torch.float64).div(255.0).permute(2, 0, 1).unsqueeze(0)  # [1, 3, H, W]
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).reshape(1, 3, 1, 1)
    return (x - mean) / std


def make_predict_fixture():
    cfg = vr.make_config("tiny")
    torch.manual_seed(PREDICT_SEED)
    model = perturbed_model(cfg)  # float32 weights
    names = spec_order(model)
    sd = model.state_dict()
    weights = {n: sd[n].detach().to(torch.float32).contiguous() for n in names}
    md = vr.config_to_metadata(cfg)
    md["generator"] = GENERATOR
    wpath = os.path.join(DATA, "predict_tiny.safetensors")
    safetensors_io.save_file(weights, wpath, md)

    gen = torch.Generator().manual_seed(PREDICT_SEED + 1)
    images = {"predict_tiny.png": pattern_image(32, 32, gen), "predict_tiny_resize.png": pattern_image(40, 48, gen, phase=0.3)}
    # The reference computes in float64 from the float32 weights exactly as stored.
    loaded, _ = safetensors_io.load_file(wpath)
    ref = vr.ViT(cfg).double().eval()
    ref.load_state_dict({k: v.double() for k, v in loaded.items()}, strict=True)
    expected = {}
    for fname, rgb in images.items():
        path = os.path.join(DATA, fname)
        write_png(path, rgb)
        assert torch.equal(read_png_rgb8(path), rgb)
        with torch.no_grad():
            logits = ref(preprocess(rgb, cfg["image_size"]))[0]
        probs = torch.softmax(logits, dim=-1)
        expected[fname] = {"logits": [float(v) for v in logits], "probabilities": [float(v) for v in probs]}
        print(f"{path}: {rgb.shape[0]}x{rgb.shape[1]}, class {int(probs.argmax()) + 1}, "
              f"expected vote {float(vr.expected_vote(probs)):.4f}")
    jpath = os.path.join(DATA, "predict_tiny_expected.json")
    _atomic_write(jpath, (json.dumps(expected, indent=2) + "\n").encode("ascii"))
    print(f"{wpath}: {os.path.getsize(wpath)} bytes; {jpath}")


def main():
    torch.set_default_dtype(torch.float32)
    torch.set_num_threads(1)  # bit-for-bit reproducible reductions
    os.makedirs(DATA, exist_ok=True)
    for name, (seed, cfg) in CONFIGS.items():
        make_golden(name, seed, cfg)
    make_predict_fixture()


if __name__ == "__main__":
    main()
