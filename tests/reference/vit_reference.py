"""PyTorch reference of the vitiq model, written from /work/shared/SPEC.md (docs: SPEC.md).

A Vision Transformer for small data sets: Shifted Patch Tokenization (SPT) and Locality
Self-Attention (LSA). The module tree reproduces the state_dict names and shapes of the "current
reference implementation" of the specification exactly:

    to_patch_embedding.to_patch_tokens.1.weight/bias   [5CP^2]      LayerNorm
    to_patch_embedding.to_patch_tokens.2.weight/bias   [D, 5CP^2] / [D]
    pos_embedding [1, N, D], cls_token [1, 1, D]
    transformer.layers.l.0.temperature                 [] (shared_log) or [h] (per_head); absent if lsa=False
    transformer.layers.l.0.norm.weight/bias            [D]
    transformer.layers.l.0.to_qkv.weight               [3I, D]
    transformer.layers.l.0.to_out.0.weight/bias        [D, I] / [D]
    transformer.layers.l.1.net.0.weight/bias           [D]          LayerNorm
    transformer.layers.l.1.net.1.weight/bias           [M, D] / [M]
    transformer.layers.l.1.net.4.weight/bias           [D, M] / [D]
    mlp_head.0.weight/bias [D], mlp_head.1.weight/bias [K, D] / [K]

A configuration is a plain dict (see CONFIG_FIELDS, RUNTIME_DEFAULTS, PRESETS, make_config).
Torch only (1.13 is enough), no einops.
"""
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "CONFIG_FIELDS", "INT_FIELDS", "RUNTIME_DEFAULTS", "PRESETS", "make_config", "validate_config",
    "config_to_metadata", "config_from_metadata", "expected_shapes", "spt_offsets", "shift_image",
    "ViT", "legacy_to_current", "current_to_legacy", "is_legacy_state_dict",
    "gaussian_soft_labels", "expected_vote", "soft_cross_entropy", "decay_parameter_names",
]

# The configuration fields stored in safetensors metadata, in this order (keys = names).
CONFIG_FIELDS = ("image_size", "patch_size", "channels", "dim", "depth", "heads", "dim_head", "mlp_dim",
                 "num_classes", "spt", "lsa", "temperature", "pool")
INT_FIELDS = ("image_size", "patch_size", "channels", "dim", "depth", "heads", "dim_head", "mlp_dim",
              "num_classes")
SPT_VARIANTS = ("axial", "diagonal", "none")
TEMPERATURES = ("shared_log", "per_head")
POOLS = ("cls", "mean")

# Runtime rates: not part of the function of the weights, never stored in metadata.
RUNTIME_DEFAULTS = {"emb_dropout": 0.0, "dropout": 0.0, "attn_dropout": 0.0, "stochastic_depth": 0.0}


def _preset(image, patch, c, d, l, h, dh, m, k, spt, temperature):
    return {"image_size": image, "patch_size": patch, "channels": c, "dim": d, "depth": l, "heads": h,
            "dim_head": dh, "mlp_dim": m, "num_classes": k, "spt": spt, "lsa": True,
            "temperature": temperature, "pool": "cls"}


# The named presets of SPEC.md (all LSA, cls pooling).
PRESETS = {
    "tiny": _preset(32, 8, 3, 32, 2, 2, 16, 64, 5, "axial", "shared_log"),
    "cifar": _preset(32, 4, 3, 192, 9, 12, 16, 384, 10, "diagonal", "per_head"),
    "aio": _preset(64, 8, 3, 128, 4, 4, 32, 256, 5, "axial", "shared_log"),
    "iqa": _preset(128, 16, 3, 256, 6, 8, 32, 512, 5, "axial", "shared_log"),
    "seed": _preset(256, 16, 3, 1024, 6, 16, 64, 2048, 5, "axial", "shared_log"),
}


def validate_config(cfg):
    """Raise ValueError when `cfg` lacks a field or a value is out of range."""
    for f in CONFIG_FIELDS:
        if f not in cfg:
            raise ValueError(f"configuration lacks field '{f}'")
    for f in INT_FIELDS:
        v = cfg[f]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"configuration field '{f}' must be a positive int, got {v!r}")
    if cfg["image_size"] % cfg["patch_size"]:
        raise ValueError(f"image_size {cfg['image_size']} is not a multiple of patch_size {cfg['patch_size']}")
    if cfg["spt"] not in SPT_VARIANTS:
        raise ValueError(f"configuration field 'spt' must be one of {SPT_VARIANTS}, got {cfg['spt']!r}")
    if cfg["temperature"] not in TEMPERATURES:
        raise ValueError(f"configuration field 'temperature' must be one of {TEMPERATURES}, got {cfg['temperature']!r}")
    if cfg["pool"] not in POOLS:
        raise ValueError(f"configuration field 'pool' must be one of {POOLS}, got {cfg['pool']!r}")
    if not isinstance(cfg["lsa"], bool):
        raise ValueError(f"configuration field 'lsa' must be a bool, got {cfg['lsa']!r}")
    for f in RUNTIME_DEFAULTS:
        v = cfg.get(f, 0.0)
        if not 0.0 <= float(v) < 1.0:
            raise ValueError(f"rate '{f}' must be in [0, 1), got {v!r}")


def make_config(base=None, **overrides):
    """A full configuration dict: `base` (a dict or a preset name) updated by `overrides`, runtime
    rates defaulted to 0 (lsa True, temperature shared_log, pool cls, spt axial when absent)."""
    cfg = {"spt": "axial", "lsa": True, "temperature": "shared_log", "pool": "cls"}
    cfg.update(RUNTIME_DEFAULTS)
    if isinstance(base, str):
        base = PRESETS[base]
    if base:
        cfg.update(base)
    cfg.update(overrides)
    validate_config(cfg)
    return cfg


def config_to_metadata(cfg):
    """The configuration as safetensors metadata: every value a string (ints in decimal, enums by
    name, lsa "true"/"false"), keys = CONFIG_FIELDS."""
    md = {}
    for f in CONFIG_FIELDS:
        v = cfg[f]
        if f == "lsa":
            md[f] = "true" if v else "false"
        elif f in INT_FIELDS:
            md[f] = str(int(v))
        else:
            md[f] = str(v)
    return md


def config_from_metadata(md):
    """Parse the CONFIG_FIELDS entries of a metadata dict (other keys are ignored) into a full
    configuration (runtime rates 0). Raises ValueError naming a missing or malformed field."""
    cfg = {}
    for f in CONFIG_FIELDS:
        if f not in md:
            raise ValueError(f"metadata lacks configuration field '{f}'")
        s = md[f]
        if f in INT_FIELDS:
            if not re.fullmatch(r"[0-9]+", s):
                raise ValueError(f"metadata field '{f}' is not a decimal integer: {s!r}")
            cfg[f] = int(s)
        elif f == "lsa":
            if s not in ("true", "false"):
                raise ValueError(f"metadata field 'lsa' must be 'true' or 'false', got {s!r}")
            cfg[f] = s == "true"
        else:
            cfg[f] = s
    return make_config(cfg)


def _derived(cfg):
    P, C, S = cfg["patch_size"], cfg["channels"], cfg["image_size"]
    copies = 1 if cfg["spt"] == "none" else 5
    n = (S // P) ** 2
    return {"patch_dim": copies * C * P * P, "n": n, "N": n + 1, "inner": cfg["heads"] * cfg["dim_head"]}


def expected_shapes(cfg):
    """name -> shape (tuple) of every state_dict entry of ViT(cfg), current names, in the order of
    SPEC.md's table (the model's own state_dict order differs: pos_embedding and cls_token first)."""
    g = _derived(cfg)
    D, PD, N, I, M, K, h = cfg["dim"], g["patch_dim"], g["N"], g["inner"], cfg["mlp_dim"], cfg["num_classes"], cfg["heads"]
    s = {
        "to_patch_embedding.to_patch_tokens.1.weight": (PD,),
        "to_patch_embedding.to_patch_tokens.1.bias": (PD,),
        "to_patch_embedding.to_patch_tokens.2.weight": (D, PD),
        "to_patch_embedding.to_patch_tokens.2.bias": (D,),
        "pos_embedding": (1, N, D),
        "cls_token": (1, 1, D),
    }
    for l in range(cfg["depth"]):
        p = f"transformer.layers.{l}."
        if cfg["lsa"]:
            s[p + "0.temperature"] = () if cfg["temperature"] == "shared_log" else (h,)
        s[p + "0.norm.weight"] = (D,)
        s[p + "0.norm.bias"] = (D,)
        s[p + "0.to_qkv.weight"] = (3 * I, D)
        s[p + "0.to_out.0.weight"] = (D, I)
        s[p + "0.to_out.0.bias"] = (D,)
        s[p + "1.net.0.weight"] = (D,)
        s[p + "1.net.0.bias"] = (D,)
        s[p + "1.net.1.weight"] = (M, D)
        s[p + "1.net.1.bias"] = (M,)
        s[p + "1.net.4.weight"] = (D, M)
        s[p + "1.net.4.bias"] = (D,)
    s["mlp_head.0.weight"] = (D,)
    s["mlp_head.0.bias"] = (D,)
    s["mlp_head.1.weight"] = (K, D)
    s["mlp_head.1.bias"] = (K,)
    return s


_DECAY_RE = re.compile(r"^(to_patch_embedding\.to_patch_tokens\.2\.weight|"
                       r"transformer\.layers\.\d+\.0\.(to_qkv|to_out\.0)\.weight|"
                       r"transformer\.layers\.\d+\.1\.net\.[14]\.weight|mlp_head\.1\.weight)$")


def decay_parameter_names(names):
    """The Linear weight matrices among `names` (current scheme): the AdamW weight-decay group."""
    return [n for n in names if _DECAY_RE.match(n)]


# ---------------------------------------------------------------------------------------------
# Shifted Patch Tokenization


def spt_offsets(spt, patch_size):
    """The (di, dj) offsets of the four shifted copies, in concatenation order:
    copy k is out_k[c, i, j] = x[c, i + di_k, j + dj_k] (zero outside the image)."""
    if spt == "axial":
        return [(0, -1), (0, 1), (-1, 0), (1, 0)]
    if spt == "diagonal":
        s = patch_size // 2
        return [(-s, -s), (-s, s), (s, -s), (s, s)]
    if spt == "none":
        return []
    raise ValueError(f"unknown spt variant {spt!r}")


def shift_image(x, di, dj):
    """out[..., i, j] = x[..., i + di, j + dj], zero where the source is outside. x: [..., H, W]."""
    H, W = x.shape[-2], x.shape[-1]
    out = torch.zeros_like(x)
    if abs(di) >= H or abs(dj) >= W:
        return out
    oi0, oi1 = max(0, -di), H - max(0, di)  # output rows whose source row is inside
    oj0, oj1 = max(0, -dj), W - max(0, dj)
    out[..., oi0:oi1, oj0:oj1] = x[..., oi0 + di:oi1 + di, oj0 + dj:oj1 + dj]
    return out


class Patchify(nn.Module):
    """[B, C', H, W] -> [B, n, P*P*C'] with feature index (p1*P + p2)*C' + channel, tokens row-major
    (einops 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)')."""

    def __init__(self, patch_size):
        super().__init__()
        self.patch_size = patch_size

    def forward(self, x):
        B, C, H, W = x.shape
        P = self.patch_size
        x = x.reshape(B, C, H // P, P, W // P, P)   # [B, C', h, p1, w, p2]
        x = x.permute(0, 2, 4, 3, 5, 1)             # [B, h, w, p1, p2, C']
        return x.reshape(B, (H // P) * (W // P), P * P * C)


class ShiftedPatchTokenization(nn.Module):
    def __init__(self, cfg, device=None):
        super().__init__()
        self.offsets = spt_offsets(cfg["spt"], cfg["patch_size"])
        patch_dim = _derived(cfg)["patch_dim"]
        self.to_patch_tokens = nn.Sequential(
            Patchify(cfg["patch_size"]),
            nn.LayerNorm(patch_dim, eps=1e-5, device=device),
            nn.Linear(patch_dim, cfg["dim"], device=device),
        )

    def forward(self, x):  # [B, C, H, W] -> [B, n, D]
        copies = [shift_image(x, di, dj) for di, dj in self.offsets]
        x = torch.cat([x, *copies], dim=1)  # [B, 5C, H, W], channel k*C + c
        return self.to_patch_tokens(x)


# ---------------------------------------------------------------------------------------------
# Transformer


def drop_path(x, p, training):
    """Stochastic depth: per sample, x * keep / (1 - p), keep ~ Bernoulli(1 - p); identity in eval."""
    if p == 0.0 or not training:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class Attention(nn.Module):
    """Pre-norm LSA (or plain MHSA when lsa=False). Returns (output, post-softmax attention)."""

    def __init__(self, cfg, device=None):
        super().__init__()
        D, h, d = cfg["dim"], cfg["heads"], cfg["dim_head"]
        I = h * d
        self.heads, self.dim_head, self.lsa = h, d, cfg["lsa"]
        self.temperature_kind = cfg["temperature"]
        if self.lsa:
            if self.temperature_kind == "shared_log":
                self.temperature = nn.Parameter(torch.log(torch.tensor(d ** -0.5, device=device)))
            else:
                self.temperature = nn.Parameter(torch.full((h,), d ** -0.5, device=device))
        self.norm = nn.LayerNorm(D, eps=1e-5, device=device)
        self.attend = nn.Softmax(dim=-1)
        self.dropout = nn.Dropout(cfg.get("attn_dropout", 0.0))
        self.to_qkv = nn.Linear(D, 3 * I, bias=False, device=device)
        self.to_out = nn.Sequential(nn.Linear(I, D, device=device), nn.Dropout(cfg.get("dropout", 0.0)))

    def tau(self):
        if not self.lsa:
            return self.dim_head ** -0.5
        if self.temperature_kind == "shared_log":
            return self.temperature.exp()
        return self.temperature.view(1, self.heads, 1, 1)  # per head, used directly

    def forward(self, x):  # [B, N, D]
        B, N, _ = x.shape
        h, d = self.heads, self.dim_head
        y = self.norm(x)
        q, k, v = self.to_qkv(y).chunk(3, dim=-1)                           # [B, N, I] each
        q, k, v = (t.reshape(B, N, h, d).transpose(1, 2) for t in (q, k, v))  # [B, h, N, d]
        dots = torch.matmul(q, k.transpose(-1, -2)) * self.tau()            # [B, h, N, N]
        if self.lsa:
            mask = torch.eye(N, dtype=torch.bool, device=x.device)
            dots = dots.masked_fill(mask, -torch.finfo(dots.dtype).max)
        attn = self.attend(dots)
        out = torch.matmul(self.dropout(attn), v)                           # [B, h, N, d]
        out = out.transpose(1, 2).reshape(B, N, h * d)                      # heads head-major
        return self.to_out(out), attn


class FeedForward(nn.Module):
    def __init__(self, cfg, device=None):
        super().__init__()
        D, M, p = cfg["dim"], cfg["mlp_dim"], cfg.get("dropout", 0.0)
        self.net = nn.Sequential(
            nn.LayerNorm(D, eps=1e-5, device=device),
            nn.Linear(D, M, device=device),
            nn.GELU(),  # exact (erf)
            nn.Dropout(p),
            nn.Linear(M, D, device=device),
            nn.Dropout(p),
        )

    def forward(self, x):
        return self.net(x)


class Transformer(nn.Module):
    def __init__(self, cfg, device=None):
        super().__init__()
        self.stochastic_depth = cfg.get("stochastic_depth", 0.0)
        self.layers = nn.ModuleList(
            [nn.ModuleList([Attention(cfg, device), FeedForward(cfg, device)]) for _ in range(cfg["depth"])])

    def forward(self, x):
        attns = []
        for attn, ff in self.layers:
            a, probs = attn(x)
            attns.append(probs)
            x = x + drop_path(a, self.stochastic_depth, self.training)
            x = x + drop_path(ff(x), self.stochastic_depth, self.training)
        return x, attns  # no final norm


class ViT(nn.Module):
    """The reference model. `cfg`: see make_config. forward(x) -> logits [B, K];
    forward(x, return_attention=True) -> (logits, [attention [B, h, N, N] per block])."""

    def __init__(self, cfg, device=None):
        super().__init__()
        cfg = make_config(cfg)
        self.cfg = cfg
        g = _derived(cfg)
        D = cfg["dim"]
        self.to_patch_embedding = ShiftedPatchTokenization(cfg, device)
        self.pos_embedding = nn.Parameter(torch.randn(1, g["N"], D, device=device))
        self.cls_token = nn.Parameter(torch.randn(1, 1, D, device=device))
        self.dropout = nn.Dropout(cfg["emb_dropout"])
        self.transformer = Transformer(cfg, device)
        self.pool = cfg["pool"]
        self.mlp_head = nn.Sequential(nn.LayerNorm(D, eps=1e-5, device=device),
                                      nn.Linear(D, cfg["num_classes"], device=device))

    def forward(self, img, return_attention=False):  # img [B, C, H, W], normalised
        c = self.cfg
        if img.dim() != 4 or tuple(img.shape[1:]) != (c["channels"], c["image_size"], c["image_size"]):
            raise ValueError(f"expected input [B, {c['channels']}, {c['image_size']}, {c['image_size']}], "
                             f"got {list(img.shape)}")
        x = self.to_patch_embedding(img)                          # [B, n, D]
        B = x.shape[0]
        cls = self.cls_token.expand(B, -1, -1)                    # [B, 1, D]
        x = torch.cat([cls, x], dim=1) + self.pos_embedding       # [B, N, D]
        x = self.dropout(x)
        x, attns = self.transformer(x)
        x = x[:, 0] if self.pool == "cls" else x.mean(dim=1)      # [B, D]
        logits = self.mlp_head(x)                                 # [B, K]
        return (logits, attns) if return_attention else logits


# ---------------------------------------------------------------------------------------------
# Naming schemes

# (legacy regex, current template) and (current regex, legacy template), per block.
_L2C = [
    (re.compile(r"^transformer\.layers\.(\d+)\.0\.fn\.(.+)$"), r"transformer.layers.\1.0.\2"),
    (re.compile(r"^transformer\.layers\.(\d+)\.1\.norm\.(.+)$"), r"transformer.layers.\1.1.net.0.\2"),
    (re.compile(r"^transformer\.layers\.(\d+)\.1\.fn\.net\.0\.(.+)$"), r"transformer.layers.\1.1.net.1.\2"),
    (re.compile(r"^transformer\.layers\.(\d+)\.1\.fn\.net\.3\.(.+)$"), r"transformer.layers.\1.1.net.4.\2"),
]
_C2L = [
    (re.compile(r"^transformer\.layers\.(\d+)\.0\.(temperature|to_qkv\..+|to_out\..+)$"),
     r"transformer.layers.\1.0.fn.\2"),
    (re.compile(r"^transformer\.layers\.(\d+)\.1\.net\.0\.(.+)$"), r"transformer.layers.\1.1.norm.\2"),
    (re.compile(r"^transformer\.layers\.(\d+)\.1\.net\.1\.(.+)$"), r"transformer.layers.\1.1.fn.net.0.\2"),
    (re.compile(r"^transformer\.layers\.(\d+)\.1\.net\.4\.(.+)$"), r"transformer.layers.\1.1.fn.net.3.\2"),
]


def _rename(name, rules):
    for rx, tpl in rules:
        if rx.match(name):
            return rx.sub(tpl, name)
    return name


def legacy_name_to_current(name):
    return _rename(name, _L2C)


def current_name_to_legacy(name):
    return _rename(name, _C2L)


def legacy_to_current(state_dict):
    """Rename the older PreNorm scheme (`...0.fn.*`, `...1.norm.*`, `...1.fn.net.0/3.*`) to the
    current one. Names already current (or outside the blocks) pass unchanged; order is kept."""
    out = type(state_dict)() if isinstance(state_dict, dict) else {}
    for k, v in state_dict.items():
        nk = legacy_name_to_current(k)
        if nk in out:
            raise ValueError(f"two tensors map to the name '{nk}'")
        out[nk] = v
    return out


def current_to_legacy(state_dict):
    """Rename the current scheme to the older PreNorm scheme (inverse of legacy_to_current)."""
    out = type(state_dict)() if isinstance(state_dict, dict) else {}
    for k, v in state_dict.items():
        nk = current_name_to_legacy(k)
        if nk in out:
            raise ValueError(f"two tensors map to the name '{nk}'")
        out[nk] = v
    return out


def is_legacy_state_dict(names):
    """True when any name uses the PreNorm scheme, False when none does; ValueError when both
    schemes appear."""
    names = list(names)
    legacy = any(any(rx.match(n) for rx, _ in _L2C) for n in names)
    current = any(any(rx.match(n) for rx, _ in _C2L) for n in names)
    if legacy and current:
        raise ValueError("the state dict mixes the legacy (PreNorm) and current naming schemes")
    return legacy


# ---------------------------------------------------------------------------------------------
# Labels and loss


def gaussian_soft_labels(votes, num_classes=5, s=0.49):
    """Gaussian soft labels [B, K] (float64): t_k proportional to exp(-(k - v)^2 / (2 s^2)),
    k = 1..K, normalised to sum 1. `votes`: sequence or tensor of votes in 1..K (any real)."""
    v = torch.as_tensor(votes, dtype=torch.float64).reshape(-1, 1)
    k = torch.arange(1, num_classes + 1, dtype=torch.float64).reshape(1, -1)
    w = torch.exp(-(k - v) ** 2 / (2.0 * s * s))
    return w / w.sum(dim=1, keepdim=True)


def expected_vote(probs):
    """sum_k k p_k over the last axis (k = 1..K)."""
    probs = torch.as_tensor(probs)
    k = torch.arange(1, probs.shape[-1] + 1, dtype=probs.dtype, device=probs.device)
    return (probs * k).sum(dim=-1)


def soft_cross_entropy(logits, target):
    """mean over the batch of sum_k -t_k log softmax(logits)_k."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
