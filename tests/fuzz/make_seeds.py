#!/usr/bin/python3
"""tests/fuzz/make_seeds.py -- writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/),
except corpus/checkpoint/, which the hidden test case of tests/test_hardening.cpp writes (it needs the
library): vitiq_tests "[.write_checkpoint_seed]". Deterministic; run with Debian's /usr/bin/python3
(PIL, numpy)."""
import io, json, os, struct
import numpy as np
from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))

def put(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# --- safetensors ------------------------------------------------------------------------------
def st(header, data=b"", pad=True):
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data

put("safetensors", "f32.st", st({"__metadata__": {"format": "pt"},
                                  "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}},
                                 struct.pack("<6f", 1, -2, 0.5, 3e38, -0.0, 7)))
put("safetensors", "mixed.st", st({"h": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
                                    "b": {"dtype": "BF16", "shape": [2], "data_offsets": [4, 8]},
                                    "i": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]},
                                    "u": {"dtype": "U8", "shape": [2], "data_offsets": [16, 18]},
                                    "t": {"dtype": "BOOL", "shape": [], "data_offsets": [18, 19]},
                                    "e": {"dtype": "F64", "shape": [0, 4], "data_offsets": [19, 19]}},
                                   struct.pack("<HHHHqBBB", 0x3C00, 0x7C01, 0x3F80, 0xFF80, -5, 3, 255, 1)))
put("safetensors", "huge_claim.st", st({"x": {"dtype": "F32", "shape": [25000000000], "data_offsets": [0, 100000000000]}}))
put("safetensors", "overlap.st", st({"a": {"dtype": "I8", "shape": [4], "data_offsets": [0, 4]},
                                      "b": {"dtype": "I8", "shape": [4], "data_offsets": [2, 6]}}, bytes(range(8))))
put("safetensors", "nested.st", st({"__metadata__": {"k": "v\u00e9\\n"}, "d": {"dtype": "I32", "shape": [1, 1, 1],
                                     "data_offsets": [0, 4], "extra": [[{"x": None}], True, -1.5e3]}}, b"\x01\x00\x00\x80"))

# --- rating tables ----------------------------------------------------------------------------
put("ratings_csv", "original.csv", "Image Name,Vote,Duration,Timestamp\n"
    "00141motorcycle_I3_Q22.jpeg,3,1.621,16-Jan-2023 10:07:03\n"
    "00033chelsea_I4_Q45.jpeg,3,3.315,16-Jan-2023 10:07:08\n"
    "00059coffee_I1_Q6.jpeg,2,2.799,16-Jan-2023 10:07:13\n")
put("ratings_csv", "long.csv", "\ufeffimage,observer,session,vote,duration,timestamp\r\n"
    "00141motorcycle_I3_Q22.jpeg,1,1,3,1.621,16-Jan-2023 10:07:03\r\n"
    "\"00033chelsea_I4_Q45.jpeg\",obsA,2,5,,\r\n"
    "00040coffee_I3_Q22_R10.png, 2 ,0,1,0.5,\"a, \"\"quoted\"\"\nline\"\r\n\r\n")
put("ratings_csv", "bad_rows.csv", "IMAGE,Vote,Session,Observer,Image Name\n"
    "x_I1_Q2.jpeg,7,1,1,x_I1_Q2.jpeg\nx_I1_Q2.jpeg,x,1,1,y\nx_I1_Q2.jpeg,3,-1,1,z\n"
    "x_I1_Q2.jpeg,3,1,,z\nx_I1_Q2.jpeg,3,1,1,x_I1_Q2.jpeg\nx_I1_Q2.jpeg,3,1,1,x_I1_Q2.jpeg\n,1,1,1,\n")
put("ratings_csv", "split.csv", "obs3_session2.csv\nimage,source,split\n"
    "00000chelsea_I1_Q8.jpeg,chelsea,train\n00559hubble_I1_Q3.jpeg,hubble,test\n00002chelsea_I2_Q15.jpeg,chelsea,val\n")

# --- study files (split.csv, ratings.csv, ground_truth.json, metrics.csv) ------------------------
SEP = "\n--8<--\n"
gt = {"seed": 1, "observer_model": {"measure": "psnr_b"},
      "observers": [{"id": "1", "expected": {"self_agreement_exact": 0.585, "self_agreement_within_one": 0.97},
                     "test": {"bayes_ceiling": 0.718, "q_lookup_accuracy": 0.65, "band_lookup_accuracy": 0.62}},
                    {"id": 2, "test": {"bayes_ceiling": 0.6}}]}
put("study", "study.txt", SEP.join([
    "image,source,split\na_I1_Q5.jpeg,a,train\nb_I3_Q22.jpeg,b,test\nc_I5_Q90.jpeg,c,val",
    "image,observer,session,vote\na_I1_Q5.jpeg,1,1,1\nb_I3_Q22.jpeg,1,1,3\nb_I3_Q22.jpeg,1,4,4\nc_I5_Q90.jpeg,2,1,5\n"
    "b_I3_Q22.jpeg,2,1,\"2\"",
    json.dumps(gt, indent=1),
    "epoch,step,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds,images_per_second,best\n"
    "1,10,0.001,1.5,0.3,1.4,0.35,2.5,100,1\n2,20,0.0005,1.2,0.4,nan,,2.4,110,0\n"]))
put("study", "flat.txt", SEP.join([
    "\ufeffsplit,image\r\ntest,x.png\r\n", "vote,session,image,observer\r\n5,0,x.png,obs\r\n",
    '{"observers": {"obs": {"bayes_ceiling": 0.5, "self_agreement": {"expected": 0.4}}}}', "epoch\n1e3\ninf\n"]))

# --- images -------------------------------------------------------------------------------------
rng = np.random.default_rng(1)
rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
def enc(img, fmt, **kw):
    b = io.BytesIO(); img.save(b, fmt, **kw); return b.getvalue()
im = Image.fromarray(rgb)
put("image", "rgb.png", enc(im, "PNG"))
put("image", "grey_alpha.png", enc(Image.fromarray(rgb[:, :, :2].copy()).convert("LA"), "PNG"))
put("image", "rgb16.png", enc(Image.fromarray((rgb[:, :, 0].astype(np.uint16) * 257)), "PNG"))
put("image", "palette.png", enc(im.convert("P"), "PNG"))
put("image", "base.jpg", enc(im, "JPEG", quality=20))
put("image", "progressive.jpg", enc(im, "JPEG", quality=50, progressive=True))
put("image", "grey.jpg", enc(im.convert("L"), "JPEG", quality=80))
put("image", "rgb.bmp", enc(im, "BMP"))
put("image", "rgb.gif", enc(im.convert("P"), "GIF"))
put("image", "rgb.tga", enc(im, "TGA", compression="tga_rle"))
put("image", "rgb.ppm", enc(im, "PPM"))
