"""Few-shot speed: FeatureExtractor.embed vs a plain timm forward, and kNN query time on 10,000 vectors.

Run: python -m bench.bench_fewshot [--images 32] [--repeats 5]

Goals: embed throughput >= 0.9x a plain timm pipeline on the same images (PIL -> timm's eval
transform -> model), and one kNN query over a 10,000 x 1280 gallery in < 5 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
SHARED = Path(__file__).resolve().parents[2] / "shared"
os.environ.setdefault("CVDEMO_WEIGHTS_DIR", str(SHARED / "weights"))
os.environ.setdefault("CVDEMO_DATA_DIR", str(SHARED / "data"))
os.environ.setdefault("CVDEMO_OFFLINE", "1")

import numpy as np  # noqa: E402

from bench.timing import compare, report  # noqa: E402
from cvdemo import fewshot as fs  # noqa: E402
from cvdemo.images import load_image  # noqa: E402


def bench_embed(n_images: int, repeats: int) -> None:
    import torch

    from cvdemo.backbones import create_backbone, eval_transform

    images = [load_image(p) for _, p in fs.sample_examples((n_images + 1) // 2, "val")][:n_images]
    extractor = fs.FeatureExtractor("efficientnet_lite0")
    plain = create_backbone("efficientnet_lite0", num_classes=0)  # a separate, untouched timm model
    transform = eval_transform(plain)

    def plain_timm() -> None:
        with torch.inference_mode():
            plain(torch.stack([transform(img) for img in images]))

    def plain_forward_only(x=torch.stack([transform(img) for img in images])) -> None:
        with torch.inference_mode():
            plain(x)

    def extractor_forward_only(x=extractor.preprocess(images)) -> None:
        with torch.inference_mode():
            extractor._model(x)

    threads = torch.get_num_threads()
    print(f"\n== embed {len(images)} hymenoptera images, batch {len(images)}, {threads} torch threads ==")
    timings = compare(
        {
            "plain timm (transform + forward)": plain_timm,
            "FeatureExtractor.embed": lambda: extractor.embed(images, batch_size=len(images)),
        },
        repeats=repeats,
        warmup=1,
    )
    ratio = report(timings, "plain timm (transform + forward)")
    throughput = ratio and 1 / ratio
    print(
        f"images/s: plain {len(images) / timings['plain timm (transform + forward)'].best:.1f}, "
        f"embed {len(images) / timings['FeatureExtractor.embed'].best:.1f}; "
        f"embed throughput = {throughput:.2f}x plain (goal >= 0.90x: {'OK' if throughput >= 0.9 else 'MISSED'})"
    )
    print("\n-- forward only, same preprocessed batch (channels-last vs timm's default layout) --")
    report(
        compare(
            {"plain forward (NCHW)": plain_forward_only, "extractor forward (channels-last)": extractor_forward_only},
            repeats=repeats,
            warmup=1,
        ),
        "plain forward (NCHW)",
    )


def bench_knn(gallery_size: int = 10_000, dim: int = 1280) -> None:
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((gallery_size, dim)).astype(np.float32)
    labels = rng.integers(0, 10, gallery_size).astype(str)
    query = rng.standard_normal((1, dim)).astype(np.float32)
    knn = fs.KNNClassifier(k=5).fit(gallery, labels)
    sk = NearestNeighbors(n_neighbors=5, metric="cosine", algorithm="brute").fit(gallery)

    def ours() -> None:
        knn.predict_proba(query)
        knn.kneighbors(query)

    print(f"\n== kNN query: 1 vector against {gallery_size:,} x {dim} (k=5, cosine) ==")
    timings = compare(
        {"KNNClassifier proba + neighbours": ours, "sklearn NearestNeighbors.kneighbors": lambda: sk.kneighbors(query)},
        repeats=30,
        warmup=3,
    )
    report(timings, "KNNClassifier proba + neighbours")
    best = timings["KNNClassifier proba + neighbours"].best * 1e3
    print(f"KNNClassifier query: {best:.2f} ms (goal < 5 ms: {'OK' if best < 5 else 'MISSED'})")
    assert (knn.kneighbors(query)[1] == sk.kneighbors(query)[1]).all(), "different neighbours than scikit-learn"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bench_embed(args.images, args.repeats)
    bench_knn()


if __name__ == "__main__":
    main()
