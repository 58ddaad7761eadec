"""Fast search at scale: brute force vs LSH vs FAISS IVF on a synthetic gallery of CLIP-sized vectors.

Goal (issue 18): at 1,000,000 vectors the production index (FAISS IVF-Flat) answers a query at least
10x faster than brute force with recall@10 >= 0.95. Also prints LSH's recall/latency grid (bits x tables).
Queries are timed one at a time (a student's search), each method on the same queries.

Run: ``python -m bench.bench_search [--items 1000000] [--queries 100] [--dim 512]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    from cvdemo import search

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--dim", type=int, default=search.CLIP_DIM)
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--bits", type=int, default=16)
    parser.add_argument("--tables", type=int, default=8)
    parser.add_argument("--grid-items", type=int, default=100_000, help="gallery size of the LSH grid (0: skip)")
    args = parser.parse_args(argv)
    pd.set_option("display.width", 160)
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    start = time.perf_counter()
    vectors = search.synthetic_gallery(args.items, args.dim, seed=0)
    queries = search.synthetic_gallery(args.queries, args.dim, seed=1)
    print(f"synthetic gallery: {args.items:,} x {args.dim} ({vectors.nbytes / 2**30:.2f} GiB) "
          f"in {time.perf_counter() - start:.1f} s; {args.queries} queries from the same distribution")
    table = search.compare_indexes(vectors, queries, k=10, bits=args.bits, tables=args.tables, nprobe=args.nprobe)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    brute = table[table["method"].str.startswith("brute")].iloc[0]
    faiss = table[table["method"].str.startswith("FAISS")]
    if len(faiss):
        row = faiss.iloc[0]
        speedup = brute["query_ms"] / row["query_ms"]
        ok = speedup >= 10 and row["recall_at_k"] >= 0.95
        print(f"FAISS IVF vs brute force at {args.items:,}: {speedup:.1f}x faster per query, recall@10 "
              f"{row['recall_at_k']:.3f}   goal >= 10x and >= 0.95: {'OK' if ok else 'MISSED'}")
    else:
        print("faiss-cpu is not installed: pip install -r requirements.txt")
    del vectors

    if args.grid_items:
        grid_vectors = search.synthetic_gallery(args.grid_items, args.dim, seed=0)
        print(f"\nLSH grid on {args.grid_items:,} vectors (recall@10 / ms per query / candidates per query):")
        sweep = search.lsh_sweep(grid_vectors, queries, 10, bits=(8, 12, 16, 20), tables=(1, 2, 4, 8, 16, 32))
        for column in ("recall_at_k", "query_ms", "candidates_per_query"):
            print(f"\n{column}:")
            print(sweep.pivot(index="bits", columns="tables", values=column).to_string(float_format=lambda v: f"{v:.3g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
