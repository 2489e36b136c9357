import pytest

from datafree.errors import DatafreeError
from datafree.registry import Registry


def test_register_get_create_and_names():
    reg = Registry("widget")

    @reg.register()
    def small(size=1):
        return ("small", size)

    @reg.register("big-one")
    def big():
        return "big"

    assert reg.names() == ["big-one", "small"]
    assert "small" in reg and len(reg) == 2
    assert reg.create("small", size=3) == ("small", 3)
    assert reg.get("big-one")() == "big"


def test_unknown_name_lists_choices_and_suggests():
    reg = Registry("widget")
    reg.register("resnet18")(lambda: None)
    reg.register("resnet34")(lambda: None)
    with pytest.raises(DatafreeError, match=r"unknown widget 'resnet19'.*Did you mean 'resnet18'.*resnet18, resnet34"):
        reg.get("resnet19")


def test_double_registration_is_refused():
    reg = Registry("widget")
    reg.register("a")(lambda: None)
    with pytest.raises(ValueError, match="twice"):
        reg.register("a")(lambda: None)
