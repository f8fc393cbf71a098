"""The sizes of every experiment of the book per profile, in one object: :class:`Plan`.

``plan(profile)`` gives the :class:`Plan` of a profile. Its fields are grouped by prefix:

- ``table3_*``: page 3, the U-Net page (Table 3, the remedies of the paper's section 2.5.6, multi vs
  single, the AASCE run); :meth:`Plan.recipe` turns them into :func:`spinelib.seg.experiment.run_experiment`
  arguments;
- ``e2e_*``, ``resnet50_size``, ``indomain_*``: pages 4-5, the classification experiments (the CNNs
  trained end to end, the paper's final ResNet-50, the in-domain U-Net trained on AASCE vertebra masks);
- ``segmenter_*``: page 5's measuring U-Nets (segment, then measure).

The pages read one part of the plan under short names: ``page_plan(P)``, ``experiment_sizes(P)`` and
``segmenter_plan(P)`` give a :class:`PlanPart` (``page_plan(P).size`` is ``plan(P).table3_size``).
A part also answers every name of the whole plan, so a function that takes a :class:`Plan` takes a
part as well.

Cache keys: the segmenters' key hashes :meth:`Plan.segmenter_fields` and the U-Net runs' key
hashes the :meth:`Plan.recipe` dicts; both are the dicts the three classes this module held before
(``PagePlan``, ``ExperimentSizes``, ``SegmenterPlan``) gave, so every cached run stays valid
(``tests/test_plans.py`` pins the keys).
"""

from __future__ import annotations

from dataclasses import dataclass

RECIPE: dict = {"loss": "paper", "batch_norm": True, "bn_momentum": 0.9}
"""The U-Net page's recipe: the paper's network and loss, plus batch normalisation with a moving
average that forgets its initial statistics within a few dozen steps (page 2 shows why)."""


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Sizes and epochs of every experiment of the book, for one profile (see the module docstring).

    The ``ci`` plan was sized for about 15 minutes a page on an idle 2-core CPU; measured on
    2026-12-02, page 3 takes 68 min and the book over 2 h (``benchmarks/book_profile_ci.md``); ``tiny``
    is a smoke run; ``paper`` and ``long`` are for longer runs (``long``: what
    ``scripts/train_unet_synthetic.py`` commits).
    """

    profile: str
    seed: int = 0  # the U-Net page's runs (:meth:`recipe`)

    # page 3, the U-Net page
    table3_size: tuple[int, int]  # Table 3 input size (height, width)
    table3_filters: int
    table3_batch_size: int
    table3_epochs: int  # Table 3 networks
    table3_single_epochs: int  # the multi-vs-single comparison (all of its networks)
    table3_single_views: tuple[str, ...] = ("AP", "LAT")  # views of the multi-vs-single comparison
    table3_line_epochs: int  # the remedies of the paper's section 2.5.6 (per view)
    table3_large_size: tuple[int, int]  # the "larger input" remedy
    table3_large_filters: int
    table3_aasce_size: tuple[int, int]
    table3_aasce_images: int | None
    table3_aasce_epochs: int

    # pages 4-5, classification
    e2e_size: tuple[int, int]  # input of the CNNs trained end to end (Table 4 rows 1-5)
    e2e_epochs: int
    e2e_folds: int  # folds of the end-to-end rows (each fold traces and trains a whole CNN)
    e2e_rows: tuple[int, ...]  # which of rows 1-5 this profile trains end to end
    resnet50_size: tuple[int, int]  # ResNet-50 input of the paper's final network (512x256)
    indomain_size: tuple[int, int]  # in-domain U-Net on AASCE vertebra masks
    indomain_filters: int
    indomain_epochs: int

    # page 5, the measuring U-Nets (segment, then measure)
    segmenter_patients: int  # synthetic patients of the separate segmentation training set
    segmenter_size: tuple[int, int]  # (height, width) of the network input
    segmenter_filters: int
    segmenter_epochs: int
    segmenter_batch_size: int = 4
    segmenter_seed_offset: int = 1000  # the training set's generator seed = page seed + this
    segmenter_ap_size: tuple[int, int] | None = None  # the AP network's input; None = segmenter_size

    def recipe(self, which: str) -> dict:
        """Keyword arguments of :func:`spinelib.seg.experiment.run_experiment` (:data:`RECIPE` plus
        sizes and epochs) for ``table3``, ``single``, ``lines`` (the remedies), ``large`` or ``aasce``."""
        base = dict(RECIPE, filters=self.table3_filters, batch_size=self.table3_batch_size, seed=self.seed)
        epochs = {"table3": self.table3_epochs, "single": self.table3_single_epochs, "lines": self.table3_line_epochs,
                  "large": self.table3_line_epochs, "aasce": self.table3_aasce_epochs}
        if which not in epochs:
            raise ValueError(f"unknown recipe {which!r}; choose one of {list(epochs)}")
        out = dict(base, epochs=epochs[which], patience=max(epochs[which], 1))  # no early stopping
        if which == "large":
            out["filters"] = self.table3_large_filters
        if which == "aasce":
            out["augment"] = {"flip": True}
        return out

    def segmenter_input(self, view: str) -> tuple[int, int]:
        """The input (height, width) of page 5's measuring U-Net for ``view`` ("AP" or "LAT"): the
        AP network measures whole vertebral bodies (Cobb angle, lateral deviation) and may work at
        ``segmenter_ap_size``; the LAT one measures disk spaces a few pixels high at ``segmenter_size``."""
        if view not in ("AP", "LAT"):
            raise ValueError(f"view must be 'AP' or 'LAT', got {view!r}")
        return self.segmenter_ap_size if view == "AP" and self.segmenter_ap_size is not None else self.segmenter_size

    def part(self, name: str) -> PlanPart:
        """One part of the plan under its short names: ``"page"`` (page 3), ``"classification"``
        (pages 4-5) or ``"segmenter"`` (page 5's measuring U-Nets); see :data:`PARTS`."""
        return PlanPart(self, name)

    def segmenter_fields(self) -> dict:
        """What identifies the measuring U-Nets in their cache key (with the data and the seed):
        their sizes under the part's short names, as the key has always hashed them (``ap_size``
        only when it is set, so a plan without one keeps its key)."""
        fields = self.part("segmenter").as_dict()
        if fields["ap_size"] is None:
            del fields["ap_size"]
        return fields


PARTS: dict[str, dict[str, str]] = {
    "page": {"profile": "profile", "size": "table3_size", "filters": "table3_filters",
             "batch_size": "table3_batch_size", "epochs": "table3_epochs", "single_epochs": "table3_single_epochs",
             "line_epochs": "table3_line_epochs", "large_size": "table3_large_size",
             "large_filters": "table3_large_filters", "aasce_size": "table3_aasce_size",
             "aasce_images": "table3_aasce_images", "aasce_epochs": "table3_aasce_epochs",
             "single_views": "table3_single_views", "seed": "seed"},
    "classification": {"e2e_size": "e2e_size", "e2e_epochs": "e2e_epochs", "e2e_folds": "e2e_folds",
                       "e2e_rows": "e2e_rows", "paper_size": "resnet50_size", "unet_size": "indomain_size",
                       "unet_filters": "indomain_filters", "unet_epochs": "indomain_epochs"},
    "segmenter": {"n_patients": "segmenter_patients", "size": "segmenter_size", "filters": "segmenter_filters",
                  "epochs": "segmenter_epochs", "batch_size": "segmenter_batch_size",
                  "seed_offset": "segmenter_seed_offset", "ap_size": "segmenter_ap_size"},
}
"""The short names of each :class:`PlanPart`: short name -> :class:`Plan` field."""


class PlanPart:
    """A read-only view of one part of a :class:`Plan` under short names (``part.size``); any other
    name is the plan's own (``part.recipe``, ``part.table3_size``, ``part.segmenter_fields()``)."""

    __slots__ = ("plan", "name")

    def __init__(self, plan: Plan, name: str):
        if name not in PARTS:
            raise ValueError(f"unknown plan part {name!r}; choose one of {list(PARTS)}")
        object.__setattr__(self, "plan", plan)
        object.__setattr__(self, "name", name)

    def __getattr__(self, attr: str):
        if attr in PlanPart.__slots__:  # not set yet (a copy being built): no recursion
            raise AttributeError(attr)
        return getattr(self.plan, PARTS[self.name].get(attr, attr))

    def __reduce__(self):
        return PlanPart, (self.plan, self.name)

    def __setattr__(self, attr, value):
        raise AttributeError("a plan part is read-only; make another Plan (dataclasses.replace)")

    def as_dict(self) -> dict:
        """The part's short names and values, in :data:`PARTS` order."""
        return {short: getattr(self.plan, field) for short, field in PARTS[self.name].items()}

    def __eq__(self, other):
        return isinstance(other, PlanPart) and (self.name, self.plan) == (other.name, other.plan)

    def __hash__(self):
        return hash((self.name, self.plan))

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"{self.name} plan of {self.plan.profile!r}: {fields}"


_CLASSIFICATION: dict[str, dict] = {
    "tiny": dict(e2e_size=(64, 32), e2e_epochs=1, e2e_folds=2, e2e_rows=(4,), resnet50_size=(64, 32),
                 indomain_size=(64, 32), indomain_filters=4, indomain_epochs=1),
    "ci": dict(e2e_size=(128, 64), e2e_epochs=5, e2e_folds=3, e2e_rows=(1, 2, 3, 4, 5), resnet50_size=(512, 256),
               indomain_size=(128, 64), indomain_filters=8, indomain_epochs=12),
    "paper": dict(e2e_size=(512, 256), e2e_epochs=50, e2e_folds=5, e2e_rows=(1, 2, 3, 4, 5),
                  resnet50_size=(512, 256), indomain_size=(256, 128), indomain_filters=16, indomain_epochs=40),
}

_SEGMENTERS: dict[str, dict] = {
    "tiny": dict(segmenter_patients=6, segmenter_size=(64, 32), segmenter_filters=4, segmenter_epochs=1),
    # ci: the AP network at 256x128, where page 3's AP vertebra Dice is 0.976 (a quarter of the 512x256 cost);
    # the LAT one stays at 512x256 for the disk spaces
    "ci": dict(segmenter_patients=60, segmenter_size=(512, 256), segmenter_filters=16, segmenter_epochs=20,
               segmenter_ap_size=(256, 128)),
    "paper": dict(segmenter_patients=200, segmenter_size=(512, 256), segmenter_filters=32, segmenter_epochs=60),
}


def _page_fields(profile) -> dict:
    """The ``table3_*`` fields (and ``profile``) of a profile, or of ``"long"``."""
    from spinelib.core.config import get_profile

    if profile == "long":
        return dict(profile="long", table3_size=(384, 192), table3_filters=16, table3_batch_size=4, table3_epochs=60,
                    table3_single_epochs=20, table3_line_epochs=40, table3_large_size=(768, 384),
                    table3_large_filters=8, table3_aasce_size=(384, 192), table3_aasce_images=None,
                    table3_aasce_epochs=40)
    P = get_profile(profile)
    h, w = P.seg_size
    common = dict(profile=P.name, table3_size=P.seg_size, table3_filters=P.seg_filters,
                  table3_batch_size=min(P.seg_batch_size, 4), table3_large_size=(2 * h, 2 * w),
                  table3_aasce_size=P.seg_size, table3_aasce_images=P.aasce_max_images)
    if P.name == "tiny":
        return dict(common, table3_epochs=1, table3_single_epochs=1, table3_line_epochs=1,
                    table3_large_filters=P.seg_filters, table3_aasce_epochs=1, table3_single_views=("AP",))
    if P.name == "ci":
        # AASCE: all 481 X-rays (160 gave validation Dice 0.52, all 481 gave 0.71 in 10 epochs; +5 min); 7 epochs:
        # the 10-epoch run of 2026-12-01 had validation Dice 0.697 after its 7th epoch and 0.698 at its best
        return dict(common, table3_epochs=P.seg_epochs + 5, table3_single_epochs=P.seg_epochs // 3,
                    table3_line_epochs=P.seg_epochs + 5, table3_large_filters=P.seg_filters // 2,
                    table3_aasce_images=None, table3_aasce_epochs=P.seg_epochs // 2)
    return dict(common, table3_batch_size=P.seg_batch_size, table3_epochs=P.seg_epochs,
                table3_single_epochs=P.seg_epochs, table3_line_epochs=P.seg_epochs,
                table3_large_filters=P.seg_filters, table3_aasce_epochs=P.seg_epochs)


def plan(profile, epochs: int | None = None, seed: int = 0) -> Plan:
    """The :class:`Plan` of a profile (a name or :class:`spinelib.core.config.Profile`, or ``"long"``).

    ``epochs`` overrides the Table 3 epochs (the page's other runs scale with it); ``seed`` is the
    U-Net page's runs'. A custom profile, and ``long``, get the ``ci`` classification and segmenter sizes.
    """
    fields = _page_fields(profile)
    if epochs is not None:
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
        scale = epochs / fields["table3_epochs"]
        for k in ("table3_single_epochs", "table3_line_epochs", "table3_aasce_epochs"):
            fields[k] = max(1, round(fields[k] * scale))
        fields["table3_epochs"] = epochs
    name = fields["profile"]
    return Plan(seed=seed, **fields, **_CLASSIFICATION.get(name, _CLASSIFICATION["ci"]),
                **_SEGMENTERS.get(name, _SEGMENTERS["ci"]))


def page_plan(profile, epochs: int | None = None, seed: int = 0) -> PlanPart:
    """Page 3's part of :func:`plan` (``size``, ``filters``, ``epochs``, ``recipe()``, ...)."""
    return plan(profile, epochs=epochs, seed=seed).part("page")


def experiment_sizes(profile) -> PlanPart:
    """Pages 4-5's part of :func:`plan` (``e2e_size``, ``paper_size``, ``unet_size``, ...)."""
    return plan(profile).part("classification")


def segmenter_plan(profile) -> PlanPart:
    """Page 5's measuring U-Nets' part of :func:`plan` (``n_patients``, ``size``, ``seed_offset``, ...)."""
    return plan(profile).part("segmenter")
