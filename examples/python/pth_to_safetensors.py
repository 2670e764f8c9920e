#!/usr/bin/python3
"""Convert a PyTorch checkpoint (.pth) of the SPT/LSA ViT into a vitiq safetensors weights file.

    /usr/bin/python3 examples/python/pth_to_safetensors.py model.pth model.safetensors --preset seed

The checkpoint may be a raw state dict or a dict holding it under 'state_dict', 'model' or
'model_state_dict'; a 'module.' prefix (DataParallel) is stripped. Older PreNorm names
(`...0.fn.to_qkv.weight`, `...1.fn.net.3.bias`, ...) are detected and renamed to the current
scheme unless --keep-names is given. The configuration is inferred from the tensor shapes where
possible (dim, depth, inner dim, mlp_dim, num_classes, lsa, temperature kind, heads for per_head,
patch and image size once channels and the SPT kind are known); the rest comes from --preset or
the explicit flags. Every tensor is checked against the final configuration (an error names the
tensor), then all are written as F32 with the configuration in `__metadata__`. Torch only.
"""
import argparse
import math
import os
import sys

import torch

_REF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "reference")
sys.path.insert(0, os.path.normpath(_REF))
import safetensors_io  # noqa: E402
import vit_reference as vr  # noqa: E402


class ConversionError(Exception):
    pass


def extract_state_dict(obj):
    """The state dict inside a loaded checkpoint (raw, or under a usual key), 'module.' stripped."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise ConversionError(f"the checkpoint is a {type(obj).__name__}, not a dict")
    if not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj:
                return extract_state_dict(obj[key])
        raise ConversionError("no state dict found: expected tensors, or a 'state_dict', 'model' or "
                              f"'model_state_dict' entry; top-level keys: {sorted(map(str, obj))[:10]}")
    sd = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise ConversionError(f"entry '{k}' is a {type(v).__name__}, not a tensor")
        sd[k[len("module."):] if k.startswith("module.") else k] = v
    return sd


def _shape(sd, name):
    if name not in sd:
        raise ConversionError(f"missing tensor '{name}'")
    return tuple(sd[name].shape)


def _set(cfg, field, value, source):
    """Record an inferred value; a different value given by preset/flag is an error naming `source`."""
    if cfg.get(field) is not None and cfg[field] != value:
        raise ConversionError(f"tensor '{source}' implies {field} = {value}, but the preset/flags say "
                              f"{cfg[field]}")
    cfg[field] = value


def infer_config(sd, given):
    """Complete `given` (fields from --preset and flags, None = unknown) from the shapes of the
    current-scheme state dict `sd`."""
    cfg = dict(given)
    D = _shape(sd, "cls_token")
    if len(D) != 3 or D[:2] != (1, 1):
        raise ConversionError(f"tensor 'cls_token' has shape {list(D)}, expected [1, 1, D]")
    _set(cfg, "dim", D[2], "cls_token")
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("transformer.layers.")})
    if layers != list(range(len(layers))) or not layers:
        raise ConversionError(f"transformer blocks are not numbered 0..L-1: {layers}")
    _set(cfg, "depth", len(layers), "transformer.layers.*")
    qkv = _shape(sd, "transformer.layers.0.0.to_qkv.weight")
    if len(qkv) != 2 or qkv[0] % 3:
        raise ConversionError(f"tensor 'transformer.layers.0.0.to_qkv.weight' has shape {list(qkv)}, expected [3I, D]")
    inner = qkv[0] // 3
    _set(cfg, "mlp_dim", _shape(sd, "transformer.layers.0.1.net.1.weight")[0], "transformer.layers.0.1.net.1.weight")
    _set(cfg, "num_classes", _shape(sd, "mlp_head.1.weight")[0], "mlp_head.1.weight")
    tname = "transformer.layers.0.0.temperature"
    _set(cfg, "lsa", tname in sd, tname + " (presence)")
    if cfg["lsa"]:
        t = _shape(sd, tname)
        if t == ():
            _set(cfg, "temperature", "shared_log", tname)
        elif len(t) == 1:
            _set(cfg, "temperature", "per_head", tname)
            _set(cfg, "heads", t[0], tname)
        else:
            raise ConversionError(f"tensor '{tname}' has shape {list(t)}, expected [] or [h]")
    elif cfg.get("temperature") is None:
        cfg["temperature"] = "shared_log"  # irrelevant without LSA
    if cfg.get("heads") is None and cfg.get("dim_head") is not None and inner % cfg["dim_head"] == 0:
        cfg["heads"] = inner // cfg["dim_head"]
    if cfg.get("heads") is None:
        raise ConversionError(f"the number of heads cannot be inferred (inner dim {inner} = heads * dim_head): "
                              "give --heads or --dim-head, or --preset")
    if inner % cfg["heads"]:
        raise ConversionError(f"tensor 'transformer.layers.0.0.to_qkv.weight': inner dim {inner} is not a "
                              f"multiple of heads {cfg['heads']}")
    _set(cfg, "dim_head", inner // cfg["heads"], "transformer.layers.0.0.to_qkv.weight")

    if cfg.get("spt") is None:
        raise ConversionError("the SPT variant (axial / diagonal / none) cannot be inferred: give --spt or --preset")
    if cfg.get("channels") is None:
        raise ConversionError("the number of image channels cannot be inferred: give --channels or --preset")
    pname = "to_patch_embedding.to_patch_tokens.1.weight"
    pd = _shape(sd, pname)[0]
    copies = 1 if cfg["spt"] == "none" else 5
    pp = pd // (copies * cfg["channels"])
    P = math.isqrt(pp)
    if pp * copies * cfg["channels"] != pd or P * P != pp:
        raise ConversionError(f"tensor '{pname}' has {pd} features, not {copies} * channels "
                              f"{cfg['channels']} * P^2 for spt {cfg['spt']}")
    _set(cfg, "patch_size", P, pname)
    N = _shape(sd, "pos_embedding")
    if len(N) != 3 or N[0] != 1:
        raise ConversionError(f"tensor 'pos_embedding' has shape {list(N)}, expected [1, N, D]")
    grid = math.isqrt(N[1] - 1)
    if grid * grid != N[1] - 1:
        raise ConversionError(f"tensor 'pos_embedding' has N = {N[1]} tokens: N - 1 is not a square number of patches")
    _set(cfg, "image_size", grid * P, "pos_embedding")
    if cfg.get("pool") is None:
        cfg["pool"] = "cls"
    return vr.make_config({k: v for k, v in cfg.items() if k in vr.CONFIG_FIELDS})


def verify(sd, cfg, legacy):
    """Every tensor present with the shape of `cfg`, nothing else; errors name the tensor."""
    want = vr.expected_shapes(cfg)
    if legacy:
        want = {vr.current_name_to_legacy(k): v for k, v in want.items()}
    for name, shape in want.items():
        if name not in sd:
            raise ConversionError(f"missing tensor '{name}' (shape {list(shape)})")
        if tuple(sd[name].shape) != tuple(shape):
            raise ConversionError(f"tensor '{name}' has shape {list(sd[name].shape)}, the configuration "
                                  f"needs {list(shape)}")
        if not sd[name].is_floating_point():
            raise ConversionError(f"tensor '{name}' has dtype {sd[name].dtype}, expected floating point")
    extra = [k for k in sd if k not in want]
    if extra:
        raise ConversionError(f"unexpected tensor '{extra[0]}'" + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
    return list(want)


def convert(src, dst, preset=None, keep_names=False, **flags):
    """Convert `src` (.pth) to `dst` (.safetensors). Returns (config, legacy_input)."""
    obj = torch.load(src, map_location="cpu")
    sd = extract_state_dict(obj)
    legacy = vr.is_legacy_state_dict(sd)
    current = vr.legacy_to_current(sd) if legacy else sd
    given = {f: None for f in vr.CONFIG_FIELDS}
    if preset:
        given.update(vr.PRESETS[preset])
    given.update({k: v for k, v in flags.items() if v is not None})
    cfg = infer_config(current, given)
    out_sd = sd if keep_names else current
    order = verify(out_sd, cfg, legacy and keep_names)
    tensors = {k: out_sd[k].detach().to(torch.float32).contiguous() for k in order}
    md = vr.config_to_metadata(cfg)
    md["converted_from"] = os.path.basename(src)
    md["names"] = "legacy" if (legacy and keep_names) else "current"
    safetensors_io.save_file(tensors, dst, md)
    return cfg, legacy


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Fields that cannot be inferred from the shapes: spt, channels, pool "
                                        "(default cls), and heads unless the temperature is per_head. Flags "
                                        "override the preset; every value is checked against the tensors.")
    ap.add_argument("input", help="PyTorch checkpoint (.pth / .pt)")
    ap.add_argument("output", help="safetensors file to write (atomically)")
    ap.add_argument("--preset", choices=sorted(vr.PRESETS), help="start from a named preset of SPEC.md")
    ap.add_argument("--keep-names", action="store_true",
                    help="keep legacy PreNorm names instead of renaming them to the current scheme")
    for f in vr.INT_FIELDS:
        ap.add_argument("--" + f.replace("_", "-"), dest=f, type=int, metavar="N")
    ap.add_argument("--spt", choices=vr.SPT_VARIANTS)
    ap.add_argument("--temperature", choices=vr.TEMPERATURES)
    ap.add_argument("--pool", choices=vr.POOLS, help="not stored in the weights; default cls")
    ap.add_argument("--no-lsa", dest="lsa", action="store_const", const=False,
                    help="assert that the model uses plain attention (inferred anyway)")
    args = ap.parse_args(argv)
    flags = {f: getattr(args, f) for f in vr.CONFIG_FIELDS}
    try:
        cfg, legacy = convert(args.input, args.output, preset=args.preset, keep_names=args.keep_names, **flags)
    except (ConversionError, ValueError) as e:
        print(f"{args.input}: error: {e}", file=sys.stderr)
        return 1
    print(f"{args.output}: {'legacy names ' + ('kept' if args.keep_names else 'renamed') if legacy else 'current names'}; "
          + ", ".join(f"{k}={v}" for k, v in vr.config_to_metadata(cfg).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
