"""The typed settings engine (stages/settings.py): conversions by declared type, refusals by name."""
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import pytest

from stages.settings import Partial, Settings, SettingsError, canonical_text, convert, describe, field


@dataclass(frozen=True)
class Inner(Settings):
    what = "inner setting"
    depth: int = field(3, help="how deep")
    mode: Literal["fast", "exact"] = field("fast", help="speed or accuracy")


@dataclass(frozen=True)
class Outer(Settings):
    what = "outer setting"
    flag: bool = field(False, help="on or off")
    size: tuple[int, int] = field((480, 640), help="height,width")
    path: Optional[Path] = field(None, help="a file")
    names: tuple[str, ...] = field(("a",), help="names")
    rate: float = field(0.5, help="a rate")
    inner: Inner = field(default_factory=Inner, help="nested")
    extra: dict = field(default_factory=dict, help="free-form")


@pytest.mark.parametrize("text, want", [("true", True), ("1", True), ("yes", True), ("On", True),
                                        ("false", False), ("0", False), ("no", False), ("off", False)])
def test_a_bool_takes_its_texts(text, want):
    assert Outer.from_dict({"flag": text}).flag is want


def test_values_convert_by_their_declared_type():
    o = Outer.from_dict({"size": "480,640", "path": "~/x.pkl", "names": "a,b", "rate": "1e-4",
                         "inner": {"depth": "5", "mode": "EXACT"}})
    assert o.size == (480, 640) and o.names == ("a", "b") and o.rate == 1e-4
    assert o.path == Path("~/x.pkl").expanduser() and o.inner == Inner(depth=5, mode="exact")
    assert Outer.from_dict({"size": [4, 8], "path": "none"}).size == (4, 8)
    assert Outer.from_dict({"size": "(480, 640)"}).size == (480, 640)
    assert Outer.from_dict({}) == Outer()  # missing keys take their defaults
    assert Outer.from_dict({"inner": {"depth": 1}}).inner.mode == "fast"


@pytest.mark.parametrize("data, key, expected", [
    ({"flag": "maybe"}, "flag", "a bool"),
    ({"size": "480,640,3"}, "size", "int,int"),
    ({"size": "480,x"}, "size", "int,int"),
    ({"rate": "fast"}, "rate", "a number"),
    ({"inner": {"depth": "2.5"}}, "cfg.inner.depth", "an integer"),
    ({"inner": {"depth": True}}, "cfg.inner.depth", "an integer"),
    ({"inner": {"mode": "exakt"}}, "cfg.inner.mode", "did you mean 'exact'"),
])
def test_a_wrong_value_names_key_value_and_type(data, key, expected):
    with pytest.raises(SettingsError) as e:
        Outer.from_dict(data, where="cfg" if key.startswith("cfg") else "", source_of=lambda k: "test.py")
    msg = str(e.value)
    assert key in msg and expected in msg and "(from test.py)" in msg


def test_an_unknown_key_at_any_depth_names_key_source_and_closest_names():
    with pytest.raises(SettingsError, match=r"unknown outer setting cfg\.flg \(from -o\); did you mean cfg\.flag\?"):
        Outer.from_dict({"flg": True}, where="cfg", source_of=lambda k: "-o")
    with pytest.raises(SettingsError, match=r"unknown inner setting cfg\.inner\.dept \(from x\.py\); did you mean "
                                            r"cfg\.inner\.depth\?") as e:
        Outer.from_dict({"inner": {"dept": 4}}, where="cfg", source_of=lambda k: "x.py")
    assert e.value.key == "cfg.inner.dept" and e.value.source == "x.py"
    with pytest.raises(SettingsError, match="known under cfg.inner: depth, mode"):  # nothing close: the list
        Outer.from_dict({"inner": {"zzz": 4}}, where="cfg")
    # a free-form mapping is taken as it is (raw mmengine arguments; checked where used)
    assert Outer.from_dict({"extra": {"anything": 1}}).extra == {"anything": 1}


def test_partial_checks_only_the_keys_given():
    assert convert({"depth": "7"}, Partial[Inner], "x") == {"depth": 7}
    with pytest.raises(SettingsError, match="unknown inner setting x.dpth"):
        convert({"dpth": 7}, Partial[Inner], "x")


def test_canonical_text_and_description():
    assert [canonical_text(v) for v in (True, False, (480, 640), None, 3, Path("/a"))] == \
        ["true", "false", "480,640", "none", "3", "/a"]
    keys = {f.name: f for f in describe(Outer)}
    assert "inner.depth" in keys and keys["inner.mode"].type_text == "one of 'fast', 'exact'"
    assert keys["size"].type_text == "int,int" and keys["path"].type_text == "path or none"
    assert Outer().to_dict()["size"] == [480, 640]


def test_a_number_that_is_not_finite_or_has_underscores_is_refused():
    """train.lr=inf and train.mixup_alpha=nan passed (nan passes every range check); int('1_0') is 10."""
    from stages.train.config import build_run_config

    for opt in ({"train.lr": "inf"}, {"train.lr": float("nan")}, {"train.weight_decay": "-inf"},
                {"train.max_epochs": "1_0"}):
        with pytest.raises(SettingsError, match="a number, finite|an integer|a number"):
            build_run_config("demo", "pevl", cfg_options=opt)
    assert build_run_config("demo", "pevl", cfg_options={"train.lr": "1e-4"}).train.lr == 1e-4
