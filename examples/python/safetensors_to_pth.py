#!/usr/bin/python3
"""Convert a vitiq safetensors weights file into a PyTorch state dict (.pth).

    /usr/bin/python3 examples/python/safetensors_to_pth.py model.safetensors model.pth [--legacy]

The configuration comes from the file's `__metadata__` (or --preset when the file has none). The
state dict is checked by loading it into the reference model (tests/reference/vit_reference.py)
with strict=True, then saved with torch.save in the reference model's order, current names by
default or the older PreNorm names with --legacy. Tensors keep the file's dtype unless --dtype.
Torch only.
"""
import argparse
import os
import sys
from collections import OrderedDict

import torch

_REF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "reference")
sys.path.insert(0, os.path.normpath(_REF))
import safetensors_io  # noqa: E402
import vit_reference as vr  # noqa: E402

DTYPES = {"keep": None, "f32": torch.float32, "f64": torch.float64}


def convert(src, dst, legacy=False, preset=None, prefix="", dtype=None, verify=True):
    """Returns (config, state dict written)."""
    tensors, md = safetensors_io.load_file(src)
    if any(f in md for f in vr.CONFIG_FIELDS):
        cfg = vr.config_from_metadata(md)
        for f in vr.CONFIG_FIELDS if preset else ():
            if cfg[f] != vr.PRESETS[preset][f]:
                raise ValueError(f"the file has {f} = {md[f]}, preset {preset} has {vr.PRESETS[preset][f]}")
    elif preset:
        cfg = vr.make_config(preset)
    else:
        raise ValueError("the file has no configuration metadata: give --preset")
    if prefix:
        tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not tensors:
            raise ValueError(f"no tensor name starts with '{prefix}'")
    if vr.is_legacy_state_dict(tensors):
        tensors = vr.legacy_to_current(tensors)
    if dtype is not None:
        tensors = {k: v.to(dtype) for k, v in tensors.items()}

    if verify:
        # Large models are checked on the meta device (names and shapes, no memory); small ones
        # for real, with a forward pass.
        want = vr.expected_shapes(cfg)
        missing = [k for k in want if k not in tensors]
        extra = [k for k in tensors if k not in want]
        for what, names in (("missing tensor", missing), ("unexpected tensor", extra)):
            if names:
                more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
                hint = " (a golden test file? try --prefix param.)" if "param.cls_token" in tensors else ""
                raise ValueError(f"{what} '{names[0]}'{more}{hint}")
        small = sum(v.numel() for v in tensors.values()) <= 5e7
        model = vr.ViT(cfg, device=None if small else "meta")
        model.load_state_dict(tensors, strict=True)  # raises naming missing/unexpected/mis-shaped keys
        if small:
            S = cfg["image_size"]
            with torch.no_grad():
                logits = model.eval()(torch.zeros(1, cfg["channels"], S, S))
            if not torch.isfinite(logits).all():
                raise ValueError("the reference model gives non-finite logits with these weights")
        order = list(model.state_dict())
    else:
        order = list(tensors)
    sd = OrderedDict((k, tensors[k].contiguous()) for k in order)
    if legacy:
        sd = vr.current_to_legacy(sd)
    torch.save(sd, dst)
    return cfg, sd


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="safetensors weights file")
    ap.add_argument("output", help=".pth file to write (torch.save of the state dict)")
    ap.add_argument("--legacy", action="store_true",
                    help="write the older PreNorm names (transformer.layers.l.0.fn.*, ...1.norm.*, ...1.fn.net.0/3.*)")
    ap.add_argument("--preset", choices=sorted(vr.PRESETS),
                    help="configuration for a file without metadata (checked against the metadata otherwise)")
    ap.add_argument("--prefix", default="", help="take only tensors whose name starts with this prefix and "
                                                 "strip it (e.g. 'param.' or 'final.' in the golden test files)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="keep", help="convert the tensors (default: keep)")
    ap.add_argument("--no-verify", action="store_true", help="skip loading into the reference model")
    args = ap.parse_args(argv)
    try:
        cfg, sd = convert(args.input, args.output, legacy=args.legacy, preset=args.preset, prefix=args.prefix,
                          dtype=DTYPES[args.dtype], verify=not args.no_verify)
    except (ValueError, RuntimeError, KeyError) as e:
        print(f"{args.input}: error: {e}", file=sys.stderr)
        return 1
    print(f"{args.output}: {len(sd)} tensors, {'legacy' if args.legacy else 'current'} names; "
          + ", ".join(f"{k}={v}" for k, v in vr.config_to_metadata(cfg).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
