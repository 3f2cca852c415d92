"""The zoo table of issue 18, and the release: the ensemble teachers (models/multi30k-tiny/s1 +
s2 + s3, and s1 + s2, PyTorch), each member (PyTorch and s1 as CTranslate2 int8) and the
student distilled from the ensemble s1 + s2 + s3 (CTranslate2 int8), on Multi30k test_2016_flickr,
with the speeds of `nmt-bench --config benchmarks/experiments/multi30k-tiny.yaml` (run by
scripts/tiny_release.sh first).

    python scripts/tiny_zoo.py [--data-dir ../shared/data]   # writes RESULTS/zoo/
    python scripts/tiny_zoo.py --release NOTES.md                # then, from its zoo.json

--release copies the student's export to models/release/multi30k-en-de-student with a model
card built from its zoo row, NOTES.md (how it was made, the earlier releases' history;
benchmarks/results/multi30k-tiny/release-notes.md) appended to it; it translates nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nmt.data.datasets import get_file
from nmt.zoo import ZooModel, write_release, write_zoo

RESULTS = Path("benchmarks/results/multi30k-tiny")
MEMBERS = Path("models/multi30k-tiny")
RELEASE = Path("models/release/multi30k-en-de-student")


def models() -> list[ZooModel]:
    s1, s2, s3 = MEMBERS / "s1", MEMBERS / "s2", MEMBERS / "s3"
    return [
        ZooModel("teacher-s1-s2-s3", RESULTS / "s1", s1, "original", "teacher-s1-s2-s3",
                 "teacher-s1-s2-s3", ensemble=(s2, s3)),
        ZooModel("teacher-s1-s2", RESULTS / "s1", s1, "original", "teacher-s1-s2",
                 "teacher-s1-s2", ensemble=(s2,)),
        ZooModel("s1", RESULTS / "s1", s1, "original", "s1", "s1"),
        ZooModel("s2", RESULTS / "s2", s2, "original", "s2", "s2"),
        ZooModel("s3", RESULTS / "s3", s3, "original", "s3", "s3"),
        ZooModel("s1-int8", RESULTS / "s1", Path("runs/exports/tiny-s1-int8"), "original",
                 "s1-int8"),
        ZooModel("distilled-int8", Path("runs/multi30k-tiny-distilled-x3"),
                 Path("runs/exports/tiny-distilled-int8"), "distilled", "distilled-int8"),
    ]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--release", metavar="NOTES.md", help="release the student, with these notes")
    args = p.parse_args()
    if args.release:
        zoo = json.loads((RESULTS / "zoo" / "zoo.json").read_text(encoding="utf-8"))
        notes = Path(args.release).read_text(encoding="utf-8")
        print(write_release(zoo, "distilled-int8", RELEASE, notes))
        return
    src = get_file("multi30k", "test_2016_flickr.en", args.data_dir)
    ref = get_file("multi30k", "test_2016_flickr.de", args.data_dir)
    write_zoo(models(), src, ref, RESULTS / "zoo", RESULTS / "bench" / "results.jsonl")
    print((RESULTS / "zoo" / "zoo.md").read_text())


if __name__ == "__main__":
    main()
