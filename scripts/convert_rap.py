"""Convert the original rap annotation file (RAP_annotation.mat) to advlab's PAR dataset pickle.

    python scripts/convert_rap.py /data/rap/RAP_annotation.mat /data/rap/dataset_all.pkl [--images RAP_dataset]

then run with dataset.root=/data/rap (the pickle's image folder is relative to it)."""

from __future__ import annotations

import argparse

from advlab.data.par_convert import convert_rap, write_pickle


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("annotation", help="RAP_annotation.mat")
    parser.add_argument("output", help="the dataset pickle to write (e.g. <root>/dataset_all.pkl)")
    parser.add_argument("--images", default="RAP_dataset", help="image folder, relative to dataset.root")
    args = parser.parse_args()
    d = convert_rap(args.annotation, images=args.images)
    path = write_pickle(d, args.output)
    print(f"wrote {path}: {len(d['image_name'])} images, {len(d['label_idx']['eval'])} evaluated attributes")


if __name__ == "__main__":
    main()
