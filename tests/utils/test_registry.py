import pytest

from maskrcnn.modeling import registry as model_registry
from maskrcnn.utils.registry import Registry


def test_register_as_decorator_and_call():
    reg = Registry("HEADS")

    @reg.register("a")
    def build_a():
        return "A"

    assert build_a() == "A"  # the decorator returns the function itself
    returned = reg.register("b", build_a)
    assert returned is build_a
    assert reg["a"] is build_a and reg["b"] is build_a
    assert isinstance(reg, dict) and set(reg) == {"a", "b"}


def test_duplicate_name_raises_naming_it():
    reg = Registry("HEADS")
    reg.register("dup", object())
    with pytest.raises(KeyError, match="'dup' is already registered"):
        reg.register("dup", object())
    with pytest.raises(KeyError, match="'dup'"):
        reg.register("dup")(lambda: None)


def test_unknown_name_lists_registered_names():
    reg = Registry("BACKBONES")
    reg.register("R-50-C4", 1)
    reg.register("R-50-FPN", 2)
    with pytest.raises(KeyError) as info:
        reg["R-50-FPX"]
    message = str(info.value)
    assert "R-50-FPX" in message and "'R-50-C4', 'R-50-FPN'" in message and "BACKBONES" in message
    assert reg.get("R-50-FPX") is None
    assert "R-50-FPX" not in reg


def test_non_string_name_rejected_and_dict_construction():
    reg = Registry()
    with pytest.raises(TypeError):
        reg.register(3, object())
    assert Registry({"x": 1})["x"] == 1
    assert Registry("N", {"y": 2}).name == "N"


def test_modeling_registries_exist_and_are_distinct():
    names = [
        "BACKBONES", "RPN_HEADS", "ROI_BOX_FEATURE_EXTRACTORS", "ROI_BOX_PREDICTOR",
        "ROI_MASK_FEATURE_EXTRACTORS", "ROI_MASK_PREDICTOR", "ROI_KEYPOINT_FEATURE_EXTRACTORS",
        "ROI_KEYPOINT_PREDICTOR",
    ]
    regs = [getattr(model_registry, n) for n in names]
    assert all(isinstance(r, Registry) for r in regs)
    assert len({id(r) for r in regs}) == len(regs)
    assert [r.name for r in regs] == names
