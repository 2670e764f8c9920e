#!/usr/bin/python3
"""Self-test of the PyTorch reference (vit_reference.py, safetensors_io.py) and, when present,
of the golden files in tests/data/. Run by hand from the repository root:

    /usr/bin/python3 tests/reference/check_reference.py

Prints one line per check and exits with status 1 when any check fails.
"""
import math
import os
import sys
import tempfile
import traceback

import torch
import torch.nn.functional as F
from torch.nn.utils.stateless import functional_call

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
import vit_reference as vr  # noqa: E402

DATA = os.path.join(os.path.dirname(HERE), "data")

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def small_configs():
    base = dict(image_size=8, patch_size=4, channels=3, dim=12, depth=2, heads=3, dim_head=4, mlp_dim=10,
                num_classes=5)
    return {
        "axial/shared/cls": vr.make_config(base, spt="axial", temperature="shared_log", pool="cls"),
        "diagonal/per_head/mean": vr.make_config(base, spt="diagonal", temperature="per_head", pool="mean"),
        "none/shared/cls": vr.make_config(base, spt="none"),
        "mhsa": vr.make_config(base, lsa=False),
        "patch2": vr.make_config(base, image_size=6, patch_size=2, channels=2, heads=2, spt="diagonal"),
    }


def spec_names(cfg):
    """The names of SPEC.md's table, written out independently of vit_reference.expected_shapes."""
    C, P, D, I, M, K, h = (cfg["channels"], cfg["patch_size"], cfg["dim"], cfg["heads"] * cfg["dim_head"],
                           cfg["mlp_dim"], cfg["num_classes"], cfg["heads"])
    PD = (1 if cfg["spt"] == "none" else 5) * C * P * P
    N = (cfg["image_size"] // P) ** 2 + 1
    t = [("to_patch_embedding.to_patch_tokens.1.weight", [PD]), ("to_patch_embedding.to_patch_tokens.1.bias", [PD]),
         ("to_patch_embedding.to_patch_tokens.2.weight", [D, PD]), ("to_patch_embedding.to_patch_tokens.2.bias", [D]),
         ("pos_embedding", [1, N, D]), ("cls_token", [1, 1, D])]
    for l in range(cfg["depth"]):
        b = f"transformer.layers.{l}."
        if cfg["lsa"]:
            t.append((b + "0.temperature", [] if cfg["temperature"] == "shared_log" else [h]))
        t += [(b + "0.norm.weight", [D]), (b + "0.norm.bias", [D]), (b + "0.to_qkv.weight", [3 * I, D]),
              (b + "0.to_out.0.weight", [D, I]), (b + "0.to_out.0.bias", [D]),
              (b + "1.net.0.weight", [D]), (b + "1.net.0.bias", [D]),
              (b + "1.net.1.weight", [M, D]), (b + "1.net.1.bias", [M]),
              (b + "1.net.4.weight", [D, M]), (b + "1.net.4.bias", [D])]
    t += [("mlp_head.0.weight", [D]), ("mlp_head.0.bias", [D]), ("mlp_head.1.weight", [K, D]), ("mlp_head.1.bias", [K])]
    return dict(t)


def legacy_spec_name(name):
    """SPEC.md's older PreNorm scheme, written out by hand."""
    parts = name.split(".")
    if parts[0] != "transformer":
        return name
    l, sub, rest = parts[2], parts[3], parts[4:]
    pre = f"transformer.layers.{l}."
    if sub == "0":
        if rest[0] == "norm":
            return pre + "0.norm." + rest[1]
        return pre + "0.fn." + ".".join(rest)
    # sub == "1": rest = ["net", idx, weight/bias]
    idx = rest[1]
    if idx == "0":
        return pre + "1.norm." + rest[2]
    return pre + "1.fn.net." + {"1": "0", "4": "3"}[idx] + "." + rest[2]


def perturb(model, scale=0.1):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1 + scale * torch.randn_like(m.weight))
                m.bias.copy_(scale * torch.randn_like(m.bias))


# ---------------------------------------------------------------------------------------------


@check
def state_dict_names_and_shapes():
    cfgs = dict(small_configs())
    cfgs.update({f"preset {k}": vr.make_config(k) for k in vr.PRESETS})
    for name, cfg in cfgs.items():
        model = vr.ViT(cfg, device="meta")
        got = {k: list(v.shape) for k, v in model.state_dict().items()}
        want = spec_names(cfg)
        assert got == want, f"{name}: state_dict differs from SPEC: {set(got) ^ set(want)}"
        assert {k: list(v) for k, v in vr.expected_shapes(cfg).items()} == want, name
        assert list(vr.expected_shapes(cfg)) == list(want), f"{name}: expected_shapes order"
        assert set(dict(model.named_parameters())) == set(want), f"{name}: buffers in the state dict"


@check
def attention_rows_and_diagonal():
    torch.manual_seed(0)
    for name, cfg in small_configs().items():
        model = vr.ViT(cfg).double()
        perturb(model)
        x = torch.randn(3, cfg["channels"], cfg["image_size"], cfg["image_size"], dtype=torch.float64)
        logits, attns = model(x, return_attention=True)
        assert list(logits.shape) == [3, cfg["num_classes"]]
        N = (cfg["image_size"] // cfg["patch_size"]) ** 2 + 1
        assert len(attns) == cfg["depth"]
        for a in attns:
            assert list(a.shape) == [3, cfg["heads"], N, N], (name, a.shape)
            assert (a.sum(-1) - 1).abs().max() < 1e-12, f"{name}: rows do not sum to 1"
            assert (a >= 0).all()
            diag = a.diagonal(dim1=-2, dim2=-1)
            if cfg["lsa"]:
                assert (diag == 0).all(), f"{name}: LSA diagonal not 0"
            else:
                assert (diag > 0).all(), f"{name}: MHSA diagonal should be positive"


@check
def spt_matches_pad_and_index_formula():
    torch.manual_seed(1)
    B, C, S, P = 2, 2, 8, 4
    x = torch.randn(B, C, S, S, dtype=torch.float64)
    # axial shifts as the reference implementation writes them with F.pad (left, right, top, bottom)
    pads = [(1, -1, 0, 0), (-1, 1, 0, 0), (0, 0, 1, -1), (0, 0, -1, 1)]
    for (di, dj), pad in zip(vr.spt_offsets("axial", P), pads):
        assert torch.equal(vr.shift_image(x, di, dj), F.pad(x, pad)), (di, dj)
    assert vr.spt_offsets("diagonal", 5) == [(-2, -2), (-2, 2), (2, -2), (2, 2)]
    assert vr.spt_offsets("diagonal", 4) == [(-2, -2), (-2, 2), (2, -2), (2, 2)]
    assert vr.spt_offsets("none", 4) == []
    for spt in ("axial", "diagonal", "none"):
        cfg = vr.make_config(image_size=S, patch_size=P, channels=C, dim=4, depth=1, heads=1, dim_head=4,
                             mlp_dim=4, num_classes=2, spt=spt)
        spt_mod = vr.ViT(cfg).double().to_patch_embedding
        offs = vr.spt_offsets(spt, P)
        C5 = C * (1 + len(offs))
        feats = spt_mod.to_patch_tokens[0](torch.cat([x] + [vr.shift_image(x, *o) for o in offs], 1))
        naive = torch.zeros(B, (S // P) ** 2, P * P * C5, dtype=torch.float64)
        for b in range(B):
            for r in range(S // P):
                for col in range(S // P):
                    t = r * (S // P) + col
                    for p1 in range(P):
                        for p2 in range(P):
                            for k in range(1 + len(offs)):
                                di, dj = (0, 0) if k == 0 else offs[k - 1]
                                for c in range(C):
                                    i, j = r * P + p1 + di, col * P + p2 + dj
                                    v = x[b, c, i, j] if 0 <= i < S and 0 <= j < S else 0.0
                                    naive[b, t, (p1 * P + p2) * C5 + k * C + c] = v
        assert torch.equal(feats, naive), spt


def naive_forward(sd, cfg, x):
    """An independent functional forward from a state dict (current names), loops over heads."""
    P, D, h, d = cfg["patch_size"], cfg["dim"], cfg["heads"], cfg["dim_head"]
    B, C, H, W = x.shape
    offs = vr.spt_offsets(cfg["spt"], P)
    xs = torch.cat([x] + [vr.shift_image(x, *o) for o in offs], 1)
    C5 = xs.shape[1]
    tok = xs.unfold(2, P, P).unfold(3, P, P)           # [B, C5, h', w', p1, p2]
    tok = tok.permute(0, 2, 3, 4, 5, 1).reshape(B, -1, P * P * C5)

    def ln(t, w, b):
        mu = t.mean(-1, keepdim=True)
        var = ((t - mu) ** 2).mean(-1, keepdim=True)
        return (t - mu) / torch.sqrt(var + 1e-5) * w + b

    pe = "to_patch_embedding.to_patch_tokens."
    z = ln(tok, sd[pe + "1.weight"], sd[pe + "1.bias"]) @ sd[pe + "2.weight"].T + sd[pe + "2.bias"]
    z = torch.cat([sd["cls_token"].expand(B, 1, D), z], 1) + sd["pos_embedding"]
    N = z.shape[1]
    I = h * d
    for l in range(cfg["depth"]):
        p = f"transformer.layers.{l}."
        y = ln(z, sd[p + "0.norm.weight"], sd[p + "0.norm.bias"])
        qkv = y @ sd[p + "0.to_qkv.weight"].T
        heads = []
        for j in range(h):
            q = qkv[..., j * d:(j + 1) * d]
            k = qkv[..., I + j * d:I + (j + 1) * d]
            v = qkv[..., 2 * I + j * d:2 * I + (j + 1) * d]
            if not cfg["lsa"]:
                tau = 1 / math.sqrt(d)
            elif cfg["temperature"] == "shared_log":
                tau = torch.exp(sd[p + "0.temperature"])
            else:
                tau = sd[p + "0.temperature"][j]
            s = q @ k.transpose(1, 2) * tau
            if cfg["lsa"]:
                s = s - torch.diag_embed(torch.full((N,), math.inf, dtype=s.dtype))
            heads.append(torch.softmax(s, -1) @ v)
        z = z + torch.cat(heads, -1) @ sd[p + "0.to_out.0.weight"].T + sd[p + "0.to_out.0.bias"]
        y = ln(z, sd[p + "1.net.0.weight"], sd[p + "1.net.0.bias"])
        y = y @ sd[p + "1.net.1.weight"].T + sd[p + "1.net.1.bias"]
        y = 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))
        z = z + y @ sd[p + "1.net.4.weight"].T + sd[p + "1.net.4.bias"]
    z = z[:, 0] if cfg["pool"] == "cls" else z.mean(1)
    return ln(z, sd["mlp_head.0.weight"], sd["mlp_head.0.bias"]) @ sd["mlp_head.1.weight"].T + sd["mlp_head.1.bias"]


@check
def forward_matches_naive_implementation():
    torch.manual_seed(2)
    for name, cfg in small_configs().items():
        model = vr.ViT(cfg).double().eval()
        perturb(model)
        if cfg["lsa"] and cfg["temperature"] == "per_head":
            with torch.no_grad():
                for l in range(cfg["depth"]):
                    model.transformer.layers[l][0].temperature.mul_(1 + 0.5 * torch.rand(cfg["heads"]))
        x = torch.randn(2, cfg["channels"], cfg["image_size"], cfg["image_size"], dtype=torch.float64)
        a = model(x)
        b = naive_forward({k: v.detach() for k, v in model.state_dict().items()}, cfg, x)
        err = ((a - b).norm() / b.norm()).item()
        assert err < 1e-13, f"{name}: relative error {err}"


@check
def gradcheck_small_model():
    torch.manual_seed(3)
    cfg = vr.make_config(image_size=4, patch_size=2, channels=1, dim=4, depth=1, heads=2, dim_head=2,
                         mlp_dim=6, num_classes=3, spt="axial", temperature="per_head", pool="mean")
    model = vr.ViT(cfg).double()
    perturb(model)
    names = [n for n, _ in model.named_parameters()]
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    target = vr.gaussian_soft_labels([1, 3], num_classes=3)

    def f(inp, *params):
        sd = dict(zip(names, params))
        return vr.soft_cross_entropy(functional_call(model, sd, (inp,)), target)

    params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-7, rtol=1e-5)


@check
def stochastic_depth_and_dropout_only_in_training():
    torch.manual_seed(4)
    cfg = vr.make_config("tiny", emb_dropout=0.1, dropout=0.1, attn_dropout=0.1, stochastic_depth=0.2)
    model = vr.ViT(cfg).double()
    ref = vr.ViT(vr.make_config("tiny")).double()
    ref.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    model.eval(), ref.eval()
    assert torch.equal(model(x), ref(x))
    model.train()
    assert not torch.allclose(model(x), ref(x))
    z = torch.ones(1000, 3, dtype=torch.float64)
    out = vr.drop_path(z, 0.25, True)
    assert set(out[:, 0].tolist()) <= {0.0, 1 / 0.75} and (out == out[:, :1]).all()


@check
def legacy_round_trip():
    for name, cfg in small_configs().items():
        sd = vr.ViT(cfg).state_dict()
        leg = vr.current_to_legacy(sd)
        assert list(leg) == [legacy_spec_name(k) for k in sd], name
        back = vr.legacy_to_current(leg)
        assert list(back) == list(sd) and all(back[k] is sd[k] for k in sd), name
        assert vr.legacy_to_current(sd) == sd and vr.current_to_legacy(leg) == leg, f"{name}: not idempotent"
        assert vr.is_legacy_state_dict(leg) and not vr.is_legacy_state_dict(sd)
    leg_names = set(vr.current_to_legacy(vr.ViT(vr.make_config("tiny")).state_dict()))
    for n in ("transformer.layers.1.0.fn.temperature", "transformer.layers.1.0.norm.weight",
              "transformer.layers.1.0.fn.to_qkv.weight", "transformer.layers.1.0.fn.to_out.0.bias",
              "transformer.layers.1.1.norm.bias", "transformer.layers.1.1.fn.net.0.weight",
              "transformer.layers.1.1.fn.net.3.bias", "pos_embedding", "mlp_head.1.weight"):
        assert n in leg_names, n


@check
def soft_labels_and_expected_vote():
    t = vr.gaussian_soft_labels([3])[0]
    want = torch.tensor([0.0002, 0.0997, 0.8002, 0.0997, 0.0002], dtype=torch.float64)
    assert (t - want).abs().max() < 1e-4, t
    t = vr.gaussian_soft_labels(torch.tensor([1, 2, 5, 4]), num_classes=5)
    assert t.dtype == torch.float64 and list(t.shape) == [4, 5]
    assert (t.sum(1) - 1).abs().max() < 1e-15
    assert t.argmax(1).tolist() == [0, 1, 4, 3]
    assert abs(vr.expected_vote(vr.gaussian_soft_labels([3])[0]).item() - 3) < 1e-12
    assert abs(vr.expected_vote(torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0])).item() - 3.0) < 1e-6
    logits = torch.randn(3, 5, dtype=torch.float64)
    tgt = vr.gaussian_soft_labels([1, 2, 3])
    assert abs(vr.soft_cross_entropy(logits, tgt).item() - F.cross_entropy(logits, tgt).item()) < 1e-12


@check
def config_metadata_round_trip():
    for name, cfg in list(small_configs().items()) + [(k, vr.make_config(k)) for k in vr.PRESETS]:
        md = vr.config_to_metadata(cfg)
        assert list(md) == list(vr.CONFIG_FIELDS) and all(isinstance(v, str) for v in md.values())
        back = vr.config_from_metadata(dict(md, extra="ignored"))
        assert all(back[k] == cfg[k] for k in vr.CONFIG_FIELDS), name
    md = vr.config_to_metadata(small_configs()["mhsa"])
    assert md["lsa"] == "false" and md["spt"] == "axial" and md["heads"] == "3"
    for bad in ({"lsa": "True"}, {"dim": "1.5"}, {"spt": "shifted"}):
        try:
            vr.config_from_metadata(dict(md, **bad))
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


@check
def safetensors_round_trip():
    torch.manual_seed(5)
    tensors = {
        "f64": torch.randn(3, 4, dtype=torch.float64),
        "scalar": torch.tensor(-1.25, dtype=torch.float64),
        "f32": torch.randn(5, dtype=torch.float32),
        "i64": torch.arange(-3, 4, dtype=torch.int64),
        "odd": torch.tensor([1, 2, 3], dtype=torch.uint8),
        "bf16": torch.randn(3).to(torch.bfloat16),
        "f16": torch.randn(2, 2).half(),
        "empty": torch.zeros(0, 2),
        "transposed": torch.randn(3, 2, dtype=torch.float64).T,
    }
    md = {"a": "1", "é": "ü", "empty": ""}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.safetensors")
        st.save_file(tensors, path, md)
        assert os.listdir(tmp) == ["x.safetensors"], "temporary file left behind"
        back, md2 = st.load_file(path)
        assert md2 == md and list(back) == list(tensors)
        for k, v in tensors.items():
            assert back[k].dtype == v.dtype and back[k].shape == v.shape and torch.equal(back[k], v), k
        blob = open(path, "rb").read()
        n = int.from_bytes(blob[:8], "little")
        assert (8 + n) % 8 == 0 and blob[8:8 + n].rstrip(b" ").endswith(b"}")
        header, md3 = st.read_header(path)
        assert md3 == md and header["scalar"]["shape"] == [] and header["f64"]["dtype"] == "F64"
        assert header["f64"]["data_offsets"] == [0, 96] and header["i64"]["dtype"] == "I64"
        # truncated file is refused
        with open(path, "wb") as f:
            f.write(blob[:-1])
        try:
            st.load_file(path)
        except ValueError:
            pass
        else:
            raise AssertionError("truncated file accepted")


@check
def golden_files_consistent():
    names = ["tiny", "diag_perhead", "none_shared", "mhsa", "odd"]
    paths = [os.path.join(DATA, f"golden_{n}.safetensors") for n in names]
    if not all(os.path.exists(p) for p in paths):
        print("    (golden files absent: run make_golden.py; skipped)")
        return
    for name, path in zip(names, paths):
        t, md = st.load_file(path)
        cfg = vr.config_from_metadata(md)
        B, steps = int(md["batch"]), int(md["steps"])
        assert all(v.dtype == torch.float64 for v in t.values()), name
        shapes = vr.expected_shapes(cfg)
        want = {"input", "votes", "target", "logits", "loss", "train.loss"}
        want |= {f"attn.{l}" for l in range(cfg["depth"])}
        want |= {f"{p}.{n}" for p in ("param", "grad", "final") for n in shapes}
        assert set(t) == want, f"{name}: {set(t) ^ want}"
        for n, s in shapes.items():
            for p in ("param", "grad", "final"):
                assert tuple(t[f"{p}.{n}"].shape) == s, (name, p, n)
        assert t["loss"].shape == () and t["train.loss"].shape == (steps,)
        model = vr.ViT(cfg).double()
        model.load_state_dict({n: t["param." + n] for n in shapes}, strict=True)
        logits, attns = model(t["input"], return_attention=True)
        assert torch.allclose(logits, t["logits"], rtol=0, atol=1e-12), name
        assert torch.equal(t["target"], vr.gaussian_soft_labels(t["votes"]))
        loss = vr.soft_cross_entropy(logits, t["target"])
        assert abs(loss.item() - t["loss"].item()) < 1e-12 and t["train.loss"][0] == t["loss"]
        for l, a in enumerate(attns):
            assert torch.allclose(a, t[f"attn.{l}"], rtol=0, atol=1e-12)
        b = naive_forward({n: t["param." + n] for n in shapes}, cfg, t["input"])
        assert ((b - t["logits"]).norm() / t["logits"].norm()).item() < 1e-13, name
        assert t["input"].shape[0] == B and float(md["lr"]) == 1e-3 and md["weight_decay"] == "0.05"


def main():
    failed = 0
    for fn in CHECKS:
        try:
            fn()
            print(f"ok    {fn.__name__}")
        except Exception:  # noqa: BLE001 - report every failure
            failed += 1
            print(f"FAIL  {fn.__name__}")
            traceback.print_exc()
    print(f"{len(CHECKS) - failed}/{len(CHECKS)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
