"""The sizes of every experiment of the book per profile: the U-Net page's plan, the classification pages' sizes, the measuring U-Nets' plan."""

from __future__ import annotations

from dataclasses import dataclass

from spinelib.core.config import Profile


@dataclass(frozen=True)
class SegmenterPlan:
    """Sizes of the measuring U-Nets for one profile."""

    n_patients: int  # synthetic patients of the separate segmentation training set
    size: tuple[int, int]  # (height, width) of the network input
    filters: int
    epochs: int
    batch_size: int = 4
    seed_offset: int = 1000  # the training set's generator seed = page seed + this


SEGMENTER_PLANS: dict[str, SegmenterPlan] = {
    "tiny": SegmenterPlan(6, (64, 32), 4, 1),
    "ci": SegmenterPlan(60, (512, 256), 16, 20),
    "paper": SegmenterPlan(200, (512, 256), 32, 60),
}


def segmenter_plan(profile) -> SegmenterPlan:
    """The :class:`SegmenterPlan` of a profile (name or :class:`spinelib.core.config.Profile`; a custom
    profile gets the ``ci`` plan)."""
    name = profile if isinstance(profile, str) else profile.name
    return SEGMENTER_PLANS.get(name, SEGMENTER_PLANS["ci"])


RECIPE: dict = {"loss": "paper", "batch_norm": True, "bn_momentum": 0.9}
"""The U-Net page's recipe: the paper's network and loss, plus batch normalisation with a moving
average that forgets its initial statistics within a few dozen steps (page 2 shows why)."""


@dataclass(frozen=True)
class PagePlan:
    """Sizes and epochs of every experiment on the U-Net page, for one profile.

    The ``ci`` plan is sized so the page runs in about 15 minutes on an idle 2-core CPU; ``tiny``
    is a smoke run; ``paper`` and ``long`` are for longer runs (``long``: what
    ``scripts/train_unet_synthetic.py`` commits).
    """

    profile: str
    size: tuple[int, int]  # Table 3 input size
    filters: int
    batch_size: int
    epochs: int  # Table 3 networks
    single_epochs: int  # the multi-vs-single comparison (all of its networks)
    line_epochs: int  # the remedies of the paper's section 2.5.6 (per view)
    large_size: tuple[int, int]  # the "larger input" remedy
    large_filters: int
    aasce_size: tuple[int, int]
    aasce_images: int | None
    aasce_epochs: int
    single_views: tuple[str, ...] = ("AP", "LAT")  # views of the multi-vs-single comparison
    seed: int = 0

    def recipe(self, which: str) -> dict:
        """Keyword arguments of :func:`run_experiment` (:data:`RECIPE` plus sizes and epochs) for
        ``table3``, ``single``, ``lines`` (the remedies), ``large`` or ``aasce``."""
        base = dict(RECIPE, filters=self.filters, batch_size=self.batch_size, seed=self.seed)
        epochs = {"table3": self.epochs, "single": self.single_epochs, "lines": self.line_epochs,
                  "large": self.line_epochs, "aasce": self.aasce_epochs}
        if which not in epochs:
            raise ValueError(f"unknown recipe {which!r}; choose one of {list(epochs)}")
        out = dict(base, epochs=epochs[which], patience=max(epochs[which], 1))  # no early stopping
        if which == "large":
            out["filters"] = self.large_filters
        if which == "aasce":
            out["augment"] = {"flip": True}
        return out


def page_plan(profile, epochs: int | None = None, seed: int = 0) -> PagePlan:
    """The :class:`PagePlan` of a profile (a name or :class:`spinelib.core.config.Profile`, or
    ``"long"``); ``epochs`` overrides the Table 3 epochs (the others scale with it)."""
    from spinelib.core.config import get_profile

    if profile == "long":
        plan = dict(profile="long", size=(384, 192), filters=16, batch_size=4, epochs=60, single_epochs=20,
                    line_epochs=40, large_size=(768, 384), large_filters=8, aasce_size=(384, 192),
                    aasce_images=None, aasce_epochs=40)
    else:
        P = get_profile(profile)
        h, w = P.seg_size
        common = dict(profile=P.name, size=P.seg_size, filters=P.seg_filters, batch_size=min(P.seg_batch_size, 4),
                      large_size=(2 * h, 2 * w), aasce_size=P.seg_size, aasce_images=P.aasce_max_images)
        if P.name == "tiny":
            plan = dict(common, epochs=1, single_epochs=1, line_epochs=1, large_filters=P.seg_filters, aasce_epochs=1,
                        single_views=("AP",))
        elif P.name == "ci":
            # AASCE: all 481 X-rays (160 gave validation Dice 0.52, all 481 gave 0.71 in 10 epochs; +5 min)
            plan = dict(common, epochs=P.seg_epochs + 5, single_epochs=P.seg_epochs // 3, line_epochs=P.seg_epochs + 5,
                        large_filters=P.seg_filters // 2, aasce_images=None, aasce_epochs=P.seg_epochs * 2 // 3)
        else:
            plan = dict(common, batch_size=P.seg_batch_size, epochs=P.seg_epochs, single_epochs=P.seg_epochs,
                        line_epochs=P.seg_epochs, large_filters=P.seg_filters, aasce_epochs=P.seg_epochs)
    if epochs is not None:
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        scale = epochs / plan["epochs"]
        for k in ("single_epochs", "line_epochs", "aasce_epochs"):
            plan[k] = max(1, round(plan[k] * scale))
        plan["epochs"] = epochs
    return PagePlan(seed=seed, **plan)


@dataclass(frozen=True)
class ExperimentSizes:
    """What the profiles of :mod:`spinelib.core.config` do not fix: the sizes of this page's runs."""

    e2e_size: tuple[int, int]  # input of the CNNs trained end to end (Table 4 rows 1-5)
    e2e_epochs: int
    e2e_folds: int  # folds of the end-to-end rows (each fold traces and trains a whole CNN)
    e2e_rows: tuple[int, ...]  # which of rows 1-5 this profile trains end to end
    paper_size: tuple[int, int]  # ResNet-50 input of the paper's final network (512x256)
    unet_size: tuple[int, int]  # in-domain U-Net on AASCE vertebra masks
    unet_filters: int
    unet_epochs: int


EXPERIMENT_SIZES: dict[str, ExperimentSizes] = {
    "tiny": ExperimentSizes((64, 32), 1, 2, (4,), (64, 32), (64, 32), 4, 1),
    "ci": ExperimentSizes((128, 64), 5, 3, (1, 2, 3, 4, 5), (512, 256), (128, 64), 8, 12),
    "paper": ExperimentSizes((512, 256), 50, 5, (1, 2, 3, 4, 5), (512, 256), (256, 128), 16, 40),
}


def experiment_sizes(profile: Profile) -> ExperimentSizes:
    """The :class:`ExperimentSizes` of a profile (a custom profile gets the ``ci`` sizes)."""
    return EXPERIMENT_SIZES.get(profile.name, EXPERIMENT_SIZES["ci"])
