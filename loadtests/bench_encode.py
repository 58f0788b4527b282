"""PNG encoding: Tessera's writer (deployments.png) against Pillow's at its fastest level, one run.

    python -m loadtests.bench_encode --output /tmp/tessera-bench/encode [--repeats 20]

Three kinds of content per size, made here (no photographs ship with the project): `smooth`, a
small random image scaled up bicubically (large soft areas, as in most generated images);
`gradient`, ramps with mild noise; `noise`, uniform random bytes, what a random-weight checkpoint
makes and the worst case for any encoder. Reports the p50 time and file size of each writer and
their ratios (Tessera over Pillow), and checks that both files decode to the same pixels.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image

from deployments.png import encode_png
from loadtests.common import percentiles, write_report


def contents(size: int, rng) -> dict[str, np.ndarray]:
    small = rng.integers(0, 256, (max(2, size // 16),) * 2 + (3,), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC))
    y, x = np.mgrid[0:size, 0:size]
    ramps = np.stack([x * 255 // size, y * 255 // size, (x + y) * 127 // size], -1)
    gradient = np.clip(ramps + rng.normal(0, 8, ramps.shape), 0, 255).astype(np.uint8)
    noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return {"smooth": smooth, "gradient": gradient, "noise": noise}


def pillow_png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def timed(fn, image, repeats: int) -> tuple[dict, bytes]:
    data = fn(image)  # the first call warms caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(image)
        times.append((time.perf_counter() - t0) * 1000)
    return percentiles(times), data


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="PNG encoding: Tessera's writer against Pillow's")
    p.add_argument("--output", required=True)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--sizes", default="64,256,512,1024")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for kind, pixels in contents(size, rng).items():
            image = Image.fromarray(pixels)
            pil_ms, pil_data = timed(pillow_png, image, args.repeats)
            own_ms, own_data = timed(encode_png, image, args.repeats)
            for data in (pil_data, own_data):
                if not np.array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels):
                    raise SystemExit(f"{size}² {kind}: a PNG did not decode to its pixels")
            rows.append({"size": f"{size}x{size}", "content": kind,
                         "pillow_ms": pil_ms, "tessera_ms": own_ms,
                         "pillow_kb": round(len(pil_data) / 1000, 1),
                         "tessera_kb": round(len(own_data) / 1000, 1),
                         "time_ratio": round(own_ms["p50"] / pil_ms["p50"], 3),
                         "size_ratio": round(len(own_data) / len(pil_data), 3)})
    lines = ["| size | content | Pillow level 1 p50 ms | Tessera p50 ms | time ratio | "
             "Pillow KB | Tessera KB | size ratio |", "|" + " --- |" * 8]
    for r in rows:
        lines.append(f"| {r['size']} | {r['content']} | {r['pillow_ms']['p50']} | "
                     f"{r['tessera_ms']['p50']} | {r['time_ratio']} | {r['pillow_kb']} | "
                     f"{r['tessera_kb']} | {r['size_ratio']} |")
    write_report(args.output, "encode", {"repeats": args.repeats, "rows": rows},
                 "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
