"""The dataset configs: every parameter dataclass of ``advlab.data``, with its checks.

Importable without torch (or any model library), so that a command line is validated in full before
anything heavy is imported; the implementations import their config from here."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from advlab.metrics.corruption import CORRUPTIONS
from advlab.registry import ComponentConfig, Registry, check

# Part groups ([start, end) over the evaluated attributes) of PromptPAR's orderings; a group of one attribute
# is flipped by the label perturbation, attributes outside every group stay.
PRESET_GROUPS: dict[str, list[tuple[int, int]]] = {
    "peta": [(0, 5), (5, 15), (15, 21), (21, 25), (25, 30), (30, 34), (34, 35)],
    "pa100k": [(0, 1), (1, 4), (4, 7), (7, 9), (9, 13), (13, 19), (19, 25)],
    "rapv2": [
        (0, 5),
        (5, 15),
        (15, 21),
        (21, 27),
        (27, 35),
        (35, 39),
        (39, 40),
        (40, 43),
        (43, 45),
        (45, 54),
    ],
    "msp60k": [
        (0, 1),
        (1, 4),
        (4, 7),
        (7, 16),
        (16, 19),
        (19, 29),
        (29, 35),
        (35, 40),
        (40, 47),
        (47, 51),
        (51, 56),
    ],  # fmt: skip
}


#: SemanticAdv's 17 identity-preserving attributes (its Figure 3)
SEMANTICADV_ATTRIBUTES = [
    "Blond_Hair",
    "Wavy_Hair",
    "Young",
    "Eyeglasses",
    "Heavy_Makeup",
    "Rosy_Cheeks",
    "Chubby",
    "Mouth_Slightly_Open",
    "Bushy_Eyebrows",
    "Wearing_Lipstick",
    "Smiling",
    "Arched_Eyebrows",
    "Bangs",
    "Wearing_Earrings",
    "Bags_Under_Eyes",
    "Receding_Hairline",
    "Pale_Skin",
]


#: dataset fields that say where the data lives or how it is loaded, not what it is (out of every cache key)
NOT_CONTENT_FIELDS = ("root", "num_workers", "pin_memory", "persistent_workers", "prefetch_factor")


def content_key(params: DatasetConfig) -> dict:
    """The fields of a dataset config that determine the data (for cache keys): all but
    :data:`NOT_CONTENT_FIELDS`, so that moving the data or loading it with workers keeps every cache."""
    return {k: v for k, v in dataclasses.asdict(params).items() if k not in NOT_CONTENT_FIELDS}


@dataclasses.dataclass
class DatasetConfig(ComponentConfig):
    default_task: ClassVar[str] = "classification"  # the task a run on this dataset gets with task.name=auto
    #: True when items are decoded from image files on every read (worker processes pay off); False for
    #: datasets held in memory as tensors
    reads_files: ClassVar[bool] = False
    root: str | None = None
    augment: bool = False  # random-crop (padding 2) training augmentation, applied on the device
    hflip: bool = False  # random horizontal flips during training (off for digits)
    # DataLoader settings of every loader of the dataset (advlab.data.base.DataModule.dataloader):
    num_workers: int | None = (
        None  # worker processes; null: 0 in memory or on a CPU run, else min(4, cores - 1)
    )
    pin_memory: bool | None = (
        None  # page-locked batches for async copies; null: on when the run's device is cuda
    )
    persistent_workers: bool = (
        False  # keep the workers alive between passes over one loader (ignored without workers)
    )
    prefetch_factor: int | None = None  # batches each worker loads ahead; null: torch's default (2)

    def validate(self, key: str) -> None:
        pass

    def validate_loading(self, key: str) -> None:
        """The DataLoader settings (checked for every dataset, whatever its own ``validate``)."""
        workers = self.num_workers
        check(workers is None or workers >= 0, f"{key}.num_workers", f"must be >= 0 or null (got {workers})")
        check(
            self.prefetch_factor is None or self.prefetch_factor >= 1,
            f"{key}.prefetch_factor",
            f"must be >= 1 or null (got {self.prefetch_factor})",
        )
        check(
            self.prefetch_factor is None or workers != 0,
            f"{key}.prefetch_factor",
            f"needs worker processes: set {key}.num_workers > 0 or {key}.prefetch_factor=null",
        )


@dataclasses.dataclass
class Cifar10Config(DatasetConfig):
    augment: bool = True
    hflip: bool = True


@dataclasses.dataclass
class CityscapesConfig(DatasetConfig):
    reads_files: ClassVar[bool] = True
    default_task: ClassVar[str] = "segmentation"  # the task a run on this dataset gets with task.name=auto
    size: list[int] | None = None  # [height, width] to resize to; null = native 1024x2048
    test_split: str = "val"  # the Cityscapes split used as advlab's test split

    def validate(self, key: str) -> None:
        check(
            self.size is None or (len(self.size) == 2 and min(self.size) >= 8),
            f"{key}.size",
            f"must be [height, width] or null (got {self.size})",
        )
        check(self.test_split in ("val", "test", "train"), f"{key}.test_split", "must be val, test or train")


@dataclasses.dataclass
class COCOConfig(DatasetConfig):
    reads_files: ClassVar[bool] = True
    default_task: ClassVar[str] = "multilabel"  # the task a run on this dataset gets with task.name=auto
    year: int = 2014
    size: int = 224
    drop_empty: bool = True
    hflip: bool = True

    def validate(self, key: str) -> None:
        check(self.year in (2014, 2017), f"{key}.year", f"must be 2014 or 2017 (got {self.year})")
        check(self.size >= 8, f"{key}.size", f"must be >= 8 (got {self.size})")


@dataclasses.dataclass
class DigitsConfig(DatasetConfig):
    size: int = 32
    channels: int = 1
    test_fraction: float = 0.25
    split_seed: int = 0

    def validate(self, key: str) -> None:
        check(self.size >= 8, f"{key}.size", f"must be >= 8 (got {self.size})")
        check(self.channels in (1, 3), f"{key}.channels", f"must be 1 or 3 (got {self.channels})")
        check(
            0.0 < self.test_fraction < 1.0,
            f"{key}.test_fraction",
            f"must be in (0, 1) (got {self.test_fraction})",
        )


@dataclasses.dataclass
class DigitsMultiLabelConfig(DatasetConfig):
    default_task: ClassVar[str] = "multilabel"  # the task a run on this dataset gets with task.name=auto
    tile_size: int = 16  # each digit is upscaled to tile_size; images are 2*tile_size square
    channels: int = 1
    num_train: int = 4000
    num_test: int = 1000
    blank_prob: float = 0.25
    mosaic_seed: int = 0
    test_fraction: float = 0.25
    split_seed: int = 0

    def validate(self, key: str) -> None:
        check(self.tile_size >= 8 and self.tile_size % 2 == 0, f"{key}.tile_size", "must be even and >= 8")
        check(self.channels in (1, 3), f"{key}.channels", f"must be 1 or 3 (got {self.channels})")
        check(self.num_train >= 1 and self.num_test >= 1, key, "num_train and num_test must be >= 1")
        check(0 <= self.blank_prob < 1, f"{key}.blank_prob", f"must be in [0, 1) (got {self.blank_prob})")
        check(0.0 < self.test_fraction < 1.0, f"{key}.test_fraction", "must be in (0, 1)")


@dataclasses.dataclass
class DigitsSegConfig(DatasetConfig):
    default_task: ClassVar[str] = "segmentation"  # the task a run on this dataset gets with task.name=auto
    size: int = 64  # canvas side (pixels)
    num_train: int = 1500
    num_test: int = 400
    max_digits: int = 3  # digits per canvas: 1..max_digits (at most 4, one per grid cell)
    min_scale: float = 0.7  # digit side as a fraction of the cell side: [min_scale, max_scale]
    max_scale: float = 1.0
    threshold: float = 0.3  # digit pixels: upscaled intensity >= threshold
    noise: float = 0.05  # std of the background noise
    split_seed: int = 0

    def validate(self, key: str) -> None:
        check(self.size >= 32, f"{key}.size", f"must be >= 32 (got {self.size})")
        check(self.num_train >= 1 and self.num_test >= 1, key, "num_train and num_test must be >= 1")
        check(1 <= self.max_digits <= 4, f"{key}.max_digits", f"must be in [1, 4] (got {self.max_digits})")
        check(
            0.2 <= self.min_scale <= self.max_scale <= 1.0,
            f"{key}.min_scale",
            "need 0.2 <= min_scale <= max_scale <= 1",
        )
        check(0.0 < self.threshold < 1.0, f"{key}.threshold", f"must be in (0, 1) (got {self.threshold})")


@dataclasses.dataclass
class DigitsStreetConfig(DatasetConfig):
    default_task: ClassVar[str] = "segmentation"  # the task a run on this dataset gets with task.name=auto
    size: int = 64  # image side (pixels); object sizes scale with it
    num_train: int = 2000
    num_test: int = 200
    min_objects: int = 2  # object instances per scene: min_objects..max_objects
    max_objects: int = 4
    colour_jitter: float = 0.1  # +- per RGB channel of an object's class colour
    noise: float = 0.03  # std of the Gaussian pixel noise
    split_seed: int = 0

    def validate(self, key: str) -> None:
        check(
            self.size >= 32 and self.size % 8 == 0,
            f"{key}.size",
            f"must be >= 32 and divisible by 8 (got {self.size})",
        )
        check(self.num_train >= 1 and self.num_test >= 1, key, "num_train and num_test must be >= 1")
        check(
            1 <= self.min_objects <= self.max_objects <= 8,
            f"{key}.min_objects",
            f"need 1 <= min_objects <= max_objects <= 8 (got {self.min_objects}, {self.max_objects})",
        )
        check(0 <= self.colour_jitter <= 0.3, f"{key}.colour_jitter", "must be in [0, 0.3]")
        check(self.noise >= 0, f"{key}.noise", "must be >= 0")


@dataclasses.dataclass
class FaceDatasetConfig(DatasetConfig):
    default_task: ClassVar[str] = "verification"  # the task a run on this dataset gets with task.name=auto
    #: images of one identity placed together in a shuffled training batch (0 or 1: plain shuffling)
    images_per_identity_batch: int = 4

    def validate(self, key: str) -> None:
        check(
            self.images_per_identity_batch >= 0,
            f"{key}.images_per_identity_batch",
            f"must be >= 0 (got {self.images_per_identity_batch})",
        )


@dataclasses.dataclass
class GTSRBConfig(DatasetConfig):
    reads_files: ClassVar[bool] = True
    augment: bool = True  # random-crop training augmentation (traffic signs are not centred)
    size: int = 32
    crop_roi: bool = True
    top_classes: int | None = None  # keep the K most populated classes (the paper's ECOC setting: 32)
    #: the GTSRB ClassIds kept, in output order: a .npy (the JMA authors' gtsrb_top32category_label.npy) or a
    #: text file of one id per line; replaces top_classes' choice
    classes_file: str | None = None
    test_fraction: float = 0.2  # used only without Final_Test
    split_seed: int = 0

    def validate(self, key: str) -> None:
        check(self.size >= 8, f"{key}.size", f"must be >= 8 (got {self.size})")
        check(
            self.top_classes is None or 2 <= self.top_classes <= 43,
            f"{key}.top_classes",
            "must be in [2, 43]",
        )
        check(0 < self.test_fraction < 1, f"{key}.test_fraction", "must be in (0, 1)")


@dataclasses.dataclass
class ImageNet100Config(DatasetConfig):
    reads_files: ClassVar[bool] = True
    size: int = 224
    resize: int = 256
    class_stride: int = 1  # 10: every 10th of 1000 sorted ImageNet classes (the paper's ImageNet-100)
    classes_file: str | None = None
    augment: bool = True
    hflip: bool = True

    def validate(self, key: str) -> None:
        check(self.size >= 8 and self.resize >= self.size, f"{key}.size", "need 8 <= size <= resize")
        check(self.class_stride >= 1, f"{key}.class_stride", "must be >= 1")


@dataclasses.dataclass
class ImageNet2KConfig(DatasetConfig):
    """The JMA paper's ImageNet2K (its Table II): 2000 of the most populated ImageNet-21K classes."""

    reads_files: ClassVar[bool] = True

    #: one WordNet id per line, in class-index order; null: the ``num_classes`` most populated ``train_dir``
    #: folders (ties broken by wnid), in sorted wnid order
    classes_file: str | None = None
    num_classes: int = 2000
    train_dir: str = "imagenet21k_train"  # ImageNet-21K-P (Ridnik et al. 2021) folder names
    test_dir: str = "imagenet21k_val"
    train_per_class: int | None = None  # the first K sorted training images per class (a training subset)
    size: int = 224  # images are resized (squished) to size x size, as ImageNet-21K-P's processing
    mean: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.5, 0.5])  # timm in21k ViT-B/16
    std: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.5, 0.5])
    hflip: bool = True
    num_workers: int = 8  # JPEG-decoding processes of the training / evaluation loaders (2M training images)
    persistent_workers: bool = True  # the workers stay between passes over a loader (ignored without workers)

    def validate(self, key: str) -> None:
        check(self.num_classes >= 2, f"{key}.num_classes", f"must be >= 2 (got {self.num_classes})")
        check(self.num_workers >= 0, f"{key}.num_workers", f"must be >= 0 (got {self.num_workers})")
        check(self.size >= 16, f"{key}.size", f"must be >= 16 (got {self.size})")
        check(
            self.train_per_class is None or self.train_per_class >= 1,
            f"{key}.train_per_class",
            f"must be >= 1 or null (got {self.train_per_class})",
        )
        check(
            bool(self.train_dir) and bool(self.test_dir), key, "train_dir and test_dir must be folder names"
        )
        check(len(self.mean) == 3 and len(self.std) == 3, key, "mean and std need 3 values (RGB)")
        check(all(s > 0 for s in self.std), f"{key}.std", "must be positive")


@dataclasses.dataclass
class MNISTConfig(DatasetConfig):
    size: int = 28  # resized (bilinear) when different from 28
    channels: int = 1
    pad: bool = False  # zero-pad the 28x28 digits to size x size instead (the JMA authors' 32x32 MNIST)

    def validate(self, key: str) -> None:
        check(self.size >= 8, f"{key}.size", f"must be >= 8 (got {self.size})")
        check(
            not self.pad or (self.size >= 28 and (self.size - 28) % 2 == 0),
            f"{key}.pad",
            f"needs an even size >= 28 to pad 28x28 images evenly (got size {self.size})",
        )
        check(self.channels in (1, 3), f"{key}.channels", "must be 1 or 3")


@dataclasses.dataclass
class NUSWideConfig(DatasetConfig):
    reads_files: ClassVar[bool] = True
    default_task: ClassVar[str] = "multilabel"  # the task a run on this dataset gets with task.name=auto
    size: int = 224
    drop_empty: bool = True
    skip_missing: bool = False
    hflip: bool = True

    def validate(self, key: str) -> None:
        check(self.size >= 8, f"{key}.size", f"must be >= 8 (got {self.size})")


@dataclasses.dataclass
class PARPickleConfig(DatasetConfig):
    reads_files: ClassVar[bool] = True
    default_task: ClassVar[str] = "par"  # the task a run on this dataset gets with task.name=auto
    preset: str = "none"  # peta | pa100k | rapv2 | msp60k | none: part groups (and expected attribute count)
    pickle: str = "dataset_all.pkl"  # relative to dataset.root, or absolute
    images: str | None = (
        None  # image folder (relative to dataset.root or absolute); default: the pickle's root
    )
    split_index: int = 0  # which of the pickle's random splits (PETA/RAP ship 5)
    train_split: str = "trainval"  # the partition trained on (victim, noise, defense)
    test_split: str = "test"
    size: int = 224  # images are resized to size x size
    groups: list[list[int]] | None = None  # [[start, end], ...] overrides the preset's groups
    hflip: bool = True

    def validate(self, key: str) -> None:
        check(self.preset in PRESET_GROUPS or self.preset == "none", f"{key}.preset",
              f"must be one of {', '.join([*PRESET_GROUPS, 'none'])} (got '{self.preset}')")  # fmt: skip
        check(self.size >= 16, f"{key}.size", f"must be >= 16 (got {self.size})")
        for s in (self.train_split, self.test_split):
            check(s in ("train", "val", "trainval", "test"), f"{key}.train_split/test_split",
                  f"must be train, val, trainval or test (got '{s}')")  # fmt: skip


@dataclasses.dataclass
class SynthPARConfig(DatasetConfig):
    default_task: ClassVar[str] = "par"  # the task a run on this dataset gets with task.name=auto
    size: int = 64  # images are size x size
    num_train: int = 3000
    num_test: int = 1000
    data_seed: int = 0  # images and labels are a pure function of this seed
    pixel_noise: float = 0.03  # std of the Gaussian pixel noise
    hflip: bool = True  # random horizontal flips during training (attributes are left/right symmetric)

    def validate(self, key: str) -> None:
        check(self.size >= 32, f"{key}.size", f"must be >= 32 (got {self.size})")
        check(self.num_train >= 16, f"{key}.num_train", f"must be >= 16 (got {self.num_train})")
        check(self.num_test >= 1, f"{key}.num_test", f"must be >= 1 (got {self.num_test})")
        check(self.pixel_noise >= 0, f"{key}.pixel_noise", f"must be >= 0 (got {self.pixel_noise})")


@dataclasses.dataclass
class VOCConfig(DatasetConfig):
    reads_files: ClassVar[bool] = True
    default_task: ClassVar[str] = "multilabel"  # the task a run on this dataset gets with task.name=auto
    size: int = 224  # images are resized to size x size (299 for InceptionV3)
    split_mode: str = "official"  # official | paper
    split_seed: int = 0
    include_difficult: bool = True
    hflip: bool = True

    def validate(self, key: str) -> None:
        check(self.size >= 8, f"{key}.size", f"must be >= 8 (got {self.size})")
        check(self.split_mode in ("official", "paper"), f"{key}.split_mode", "must be official or paper")


@dataclasses.dataclass
class Cifar10CConfig(Cifar10Config):
    corrupted_root: str | None = None  # the CIFAR-10-C folder (<corruption>.npy, labels.npy)
    corruption: str = "gaussian_noise"
    severity: int = 5

    def validate(self, key: str) -> None:
        check(self.corruption in CORRUPTIONS, f"{key}.corruption", f"must be one of {CORRUPTIONS}")
        check(1 <= self.severity <= 5, f"{key}.severity", f"must be in 1..5 (got {self.severity})")


@dataclasses.dataclass
class CelebAConfig(FaceDatasetConfig):
    reads_files: ClassVar[bool] = True
    image_size: int = 112
    crop: int = 178
    crop_top: int = 20
    attributes: list[str] = dataclasses.field(default_factory=lambda: list(SEMANTICADV_ATTRIBUTES))

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.image_size >= 16, f"{key}.image_size", f"must be >= 16 (got {self.image_size})")
        check(self.crop >= 16 and self.crop_top >= 0, f"{key}.crop", "crop must be >= 16, crop_top >= 0")
        check(len(self.attributes) >= 1, f"{key}.attributes", "must list at least one attribute")
        check(len(set(self.attributes)) == len(self.attributes), f"{key}.attributes", "has duplicates")


@dataclasses.dataclass
class SynthFacesConfig(FaceDatasetConfig):
    size: int = 32
    train_identities: int = 200
    dev_identities: int = 40
    test_identities: int = 40
    images_per_identity: int = 10
    split_seed: int = 0

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.size >= 16, f"{key}.size", f"must be >= 16 (got {self.size})")
        for name in ("train_identities", "dev_identities", "test_identities"):
            check(getattr(self, name) >= 2, f"{key}.{name}", "must be >= 2")
        check(self.images_per_identity >= 2, f"{key}.images_per_identity", "must be >= 2")


@dataclasses.dataclass
class SynthFaceLandmarksConfig(SynthFacesConfig):
    """``synthfaces`` labelled with its 68 landmarks (:mod:`advlab.data.synthfaces_landmarks`)."""

    default_task: ClassVar[str] = "landmarks"  # the task a run on this dataset gets with task.name=auto
    images_per_identity_batch: int = 0  # plain shuffling: landmark training needs no identity groups


@dataclasses.dataclass
class CelebALandmarksConfig(CelebAConfig):
    """CelebA faces for the landmark attack (:mod:`advlab.data.celeba_landmarks`): CelebA has no 68-point
    annotations, so the reference landmarks are the victim's predictions on the source images."""

    default_task: ClassVar[str] = "landmarks"  # the task a run on this dataset gets with task.name=auto


DATASETS: Registry = Registry("dataset", "dataset")
#: name -> (implementing module, config): the implementation is imported on first use
DATASETS.declare("celeba", "advlab.data.celeba", CelebAConfig)
DATASETS.declare("celeba_landmarks", "advlab.data.celeba_landmarks", CelebALandmarksConfig)
DATASETS.declare("cifar10", "advlab.data.cifar10", Cifar10Config)
DATASETS.declare("cifar10c", "advlab.data.cifar10c", Cifar10CConfig)
DATASETS.declare("cityscapes", "advlab.data.cityscapes", CityscapesConfig)
DATASETS.declare("coco", "advlab.data.coco", COCOConfig)
DATASETS.declare("digits", "advlab.data.digits", DigitsConfig)
DATASETS.declare("digits_multilabel", "advlab.data.digits_multilabel", DigitsMultiLabelConfig)
DATASETS.declare("digits_seg", "advlab.data.digits_seg", DigitsSegConfig)
DATASETS.declare("digits_street", "advlab.data.digits_street", DigitsStreetConfig)
DATASETS.declare("gtsrb", "advlab.data.gtsrb", GTSRBConfig)
DATASETS.declare("imagenet100", "advlab.data.imagenet100", ImageNet100Config)
DATASETS.declare("imagenet2k", "advlab.data.imagenet2k", ImageNet2KConfig)
DATASETS.declare("mnist", "advlab.data.mnist", MNISTConfig)
DATASETS.declare("nuswide", "advlab.data.nuswide", NUSWideConfig)
DATASETS.declare("par_pickle", "advlab.data.par_pickle", PARPickleConfig)
DATASETS.declare("synthfaces", "advlab.data.synthfaces", SynthFacesConfig)
DATASETS.declare("synthfaces_landmarks", "advlab.data.synthfaces_landmarks", SynthFaceLandmarksConfig)
DATASETS.declare("synthpar", "advlab.data.synthpar", SynthPARConfig)
DATASETS.declare("voc2012", "advlab.data.voc", VOCConfig)
