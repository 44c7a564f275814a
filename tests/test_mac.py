import pytest

from pxetui.host.mac import MacError, normalize_mac


@pytest.mark.parametrize(
    "text",
    ["52:54:00:12:34:0a", "52-54-00-12-34-0A", "5254.0012.340a", "52540012340A", " 52:54:0:12:34:a "],
)
def test_common_notations_normalise(text: str) -> None:
    assert normalize_mac(text) == "52:54:00:12:34:0a"


@pytest.mark.parametrize(
    "text",
    ["", "52:54:00:12:34", "52:54:00:12:34:56:78", "52:54-00:12:34:56", "zz:54:00:12:34:56", "5254001234"],
)
def test_bad_macs_say_what_is_expected(text: str) -> None:
    with pytest.raises(MacError, match="six hex pairs"):
        normalize_mac(text)
