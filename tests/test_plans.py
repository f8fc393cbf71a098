"""The one plan object (spinelib.core.plans.Plan): its parts, and the cache keys it feeds.

The pinned keys were computed with the three classes the module held before (PagePlan,
ExperimentSizes, SegmenterPlan, at commit 987c017): a change that alters one of them would make
every cached run of that kind train again, so it must be deliberate (and migrated in one place).
Deliberate changes since: issue 16 (2026-12-02) gave the ci plan a 7-epoch AASCE run (was 10) and a
256x128 AP measuring U-Net (``segmenter_ap_size``), so the ci ``aasce``, segmenter and page keys are new.
"""

import dataclasses

import pytest

from spinelib.core import plans
from spinelib.core.config import get_profile
from spinelib.core.runs import run_key
from spinelib.seg.experiment import ExperimentConfig

RECIPE_KEYS = {  # run_key(ExperimentConfig(**plan.recipe(which)).to_dict(), "sha1", 16): run_experiment's config part
    ("tiny", "table3"): "05bf25b21b5ba687", ("tiny", "aasce"): "912f659f43e77a62",
    ("ci", "table3"): "4defec69180e2654", ("ci", "single"): "b521b6441ab2fd03", ("ci", "lines"): "4defec69180e2654",
    ("ci", "large"): "e8bc1aeb2f815be6", ("ci", "aasce"): "ad1a02fc8dc46140",
    ("paper", "table3"): "21f9f857568e6a2a", ("paper", "aasce"): "2910eb325e5033cf",
    ("long", "table3"): "06e567d555464345", ("long", "single"): "4defec69180e2654",
    ("long", "lines"): "35de21de61e1da40", ("long", "large"): "9b5c7a33b79b3afb", ("long", "aasce"): "656d111fe5221af1",
}
SEGMENTER_KEYS = {"tiny": "37d5d9d98315", "ci": "0c3fc688e9d6", "paper": "d79901c9b4f3"}  # data "FP", seed 0
PART_KEYS = {  # run_key of the parts' dicts = of dataclasses.asdict of the former classes
    ("tiny", "page"): "47769ca78816", ("ci", "page"): "c880322b4f7d", ("paper", "page"): "7f3e09f2c8d2",
    ("tiny", "classification"): "059765d4c209", ("ci", "classification"): "ec9718045694",
    ("paper", "classification"): "203adc8392d5",
}


@pytest.mark.parametrize("profile, which", sorted(RECIPE_KEYS))
def test_recipe_keys_are_those_of_the_runs_on_disk(profile, which):
    config = ExperimentConfig(**plans.plan(profile).recipe(which)).to_dict()
    assert run_key(config, "sha1", 16) == RECIPE_KEYS[(profile, which)]


def test_recipe_key_with_epochs_and_seed():
    config = ExperimentConfig(**plans.plan("ci", epochs=7, seed=3).recipe("lines")).to_dict()
    assert run_key(config, "sha1", 16) == "fd3466cce07ed440"


@pytest.mark.parametrize("profile", sorted(SEGMENTER_KEYS))
def test_segmenter_key_is_unchanged(profile):
    fields = plans.plan(profile).segmenter_fields()
    extra = ["ap_size"] if plans.plan(profile).segmenter_ap_size is not None else []
    assert list(fields) == ["n_patients", "size", "filters", "epochs", "batch_size", "seed_offset", *extra]
    assert run_key({**fields, "data": "FP", "seed": 0}) == SEGMENTER_KEYS[profile]


@pytest.mark.parametrize("profile, part", sorted(PART_KEYS))
def test_parts_hold_the_former_classes_fields(profile, part):
    assert run_key(plans.plan(get_profile(profile)).part(part).as_dict()) == PART_KEYS[(profile, part)]


def test_parts_read_the_plan_under_short_names():
    p = plans.plan("ci")
    page, sizes, seg = plans.page_plan("ci"), plans.experiment_sizes(get_profile("ci")), plans.segmenter_plan("ci")
    assert page.size == p.table3_size and page.large_filters == p.table3_large_filters
    assert page.recipe("table3") == p.recipe("table3")
    assert sizes.paper_size == p.resnet50_size == (512, 256) and sizes.unet_size == p.indomain_size
    assert seg.size == p.segmenter_size and seg.n_patients == p.segmenter_patients == 60
    assert seg.table3_size == p.table3_size  # a part answers every name of the whole plan
    assert seg.size[0] > get_profile("ci").seg_size[0]  # the measuring U-Nets work at a larger input
    with pytest.raises(AttributeError):
        seg.size = (1, 1)
    with pytest.raises(ValueError, match="unknown plan part"):
        p.part("nope")
    assert "size=(256, 128)" in repr(page)


def test_custom_profiles_get_the_ci_sizes():
    custom = get_profile("ci", n_synthetic=10)
    assert plans.segmenter_plan(custom) == plans.segmenter_plan("ci")
    assert plans.plan(dataclasses.replace(custom, name="mine")).e2e_size == plans.plan("ci").e2e_size


def test_page_plans_grow_with_the_profile():
    tiny, ci = plans.plan("tiny"), plans.plan("ci")
    assert tiny.table3_epochs < ci.table3_epochs and tiny.table3_size < ci.table3_size
    assert tiny.table3_single_views == ("AP",)
    assert ci.recipe("table3")["loss"] == "paper" and ci.recipe("table3")["bn_momentum"] == 0.9
    assert ci.recipe("large")["filters"] == ci.table3_large_filters and "augment" in ci.recipe("aasce")
    assert plans.plan("ci", epochs=2 * ci.table3_epochs).table3_single_epochs == 2 * ci.table3_single_epochs
    with pytest.raises(ValueError, match="unknown recipe"):
        ci.recipe("nope")
    with pytest.raises(ValueError, match="epochs"):
        plans.plan("ci", epochs=0)


def test_parts_copy_and_pickle():
    import copy
    import pickle

    part = plans.segmenter_plan("tiny")
    assert pickle.loads(pickle.dumps(part)) == part == copy.deepcopy(part)
    assert pickle.loads(pickle.dumps(plans.plan("ci"))) == plans.plan("ci")


def test_the_measuring_networks_input_per_view():
    ci, paper = plans.segmenter_plan("ci"), plans.segmenter_plan("paper")
    assert ci.segmenter_input("LAT") == ci.size == (512, 256)  # disk spaces need the pixels
    assert ci.segmenter_input("AP") == (256, 128) < ci.size
    assert paper.segmenter_input("AP") == paper.segmenter_input("LAT") == paper.size  # no AP size: both the same
    with pytest.raises(ValueError, match="view"):
        ci.segmenter_input("ap")


def test_training_precision_reads_the_argument_then_the_environment_and_auto_follows_the_cpu(tmp_path, monkeypatch):
    from spinelib.core import config

    amx, zen5, plain = tmp_path / "amx", tmp_path / "zen5", tmp_path / "plain"
    amx.write_text("processor : 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    zen5.write_text("processor : 0\nflags\t\t: fpu avx2 fma avx512f avx512_bf16\n")  # bfloat16 dot products, no AMX
    plain.write_text("processor : 0\nflags\t\t: fpu avx2 fma avx512f avx512_vnni\n")  # no bfloat16 instructions
    monkeypatch.delenv(config.PRECISION_ENV, raising=False)
    assert config.training_precision() == "float32"
    assert config.training_precision("auto", cpuinfo=amx) == "mixed_bfloat16"
    assert config.training_precision("auto", cpuinfo=zen5) == "mixed_bfloat16"
    assert config.training_precision("auto", cpuinfo=plain) == "float32"
    assert config.training_precision("auto", cpuinfo=tmp_path / "missing") == "float32"
    monkeypatch.setenv(config.PRECISION_ENV, " Mixed_BFloat16 ")
    assert config.training_precision() == "mixed_bfloat16"
    assert config.training_precision("float32") == "float32"  # the argument wins
    monkeypatch.setenv(config.PRECISION_ENV, "fp16")
    with pytest.raises(ValueError, match=r"SPINELIB_PRECISION"):
        config.training_precision()


def test_a_run_under_mixed_precision_has_its_own_key_and_float32_keeps_the_old_one():
    import keras

    from spinelib.core import config

    payload = {"epochs": 3}
    before = run_key(payload)
    try:
        assert config.use_training_precision("mixed_bfloat16") == "mixed_bfloat16"
        mixed = run_key(payload)
        from spinelib.seg.unet import unet

        net = unet((32, 16, 1), filters=4, depth=2)
        assert net.layers[1].compute_dtype == "bfloat16" and net.output.dtype == "float32"  # outputs stay float32
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert mixed != before and run_key(payload) == before
