"""Convert the original peta annotation file (PETA.mat) to advlab's PAR dataset pickle.

    python scripts/convert_peta.py /data/peta/PETA.mat /data/peta/dataset_all.pkl [--images images]

then run with dataset.root=/data/peta (the pickle's image folder is relative to it)."""

from __future__ import annotations

import argparse

from advlab.data.par_convert import convert_peta, write_pickle


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("annotation", help="PETA.mat")
    parser.add_argument("output", help="the dataset pickle to write (e.g. <root>/dataset_all.pkl)")
    parser.add_argument("--images", default="images", help="image folder, relative to dataset.root")
    args = parser.parse_args()
    d = convert_peta(args.annotation, images=args.images)
    path = write_pickle(d, args.output)
    print(f"wrote {path}: {len(d['image_name'])} images, {len(d['label_idx']['eval'])} evaluated attributes")


if __name__ == "__main__":
    main()
