"""The firmware table is the one place that knows option 93: every other part asks it."""

from __future__ import annotations

import ast
import pathlib

import pytest

from pxetui.boot import firmware
from pxetui.boot.bootfiles import BootFiles
from pxetui.boot.firmware import ARCHES, HTTP_BOOT_CODES


def test_arch_7_and_9_are_both_x64_uefi() -> None:
    for code in (7, 9):
        row = ARCHES[code]
        assert (row.firmware, row.cpu, row.buildarch, row.http_boot) == ("uefi", "x86_64", "x86_64", False)
        assert row.loaders == ("ipxe.efi",) and row.label == "UEFI"


def test_http_boot_codes_are_the_uefi_http_rows() -> None:
    assert {15, 16, 18, 19} == HTTP_BOOT_CODES
    assert [firmware.firmware_label(c) for c in (0, 7, 16, 19, None, 42)] == [
        "BIOS", "UEFI", "UEFI-HTTP", "UEFI-HTTP", "", "UEFI"
    ]


def test_bios_runs_the_i386_ipxe_and_fits_both_x86_arches() -> None:
    row = ARCHES[0]
    assert row.buildarch == "i386" and set(row.fits) == {"x86_64", "i386"}
    assert firmware.fits(0, ["x86_64"], ["bios"]) and not firmware.fits(0, ["x86_64"], ["uefi"])
    assert not firmware.fits(11, ["x86_64"], ["uefi"]) and firmware.fits(19, ["arm64"], ["uefi"])
    assert firmware.fits(None, ["arm64"], ["bios"]), "a PC that did not say fits anything"


@pytest.mark.parametrize(
    ("buildarch", "platform", "long_mode", "arches", "fits"),
    [
        ("i386", "pcbios", True, ["x86_64"], True),
        ("i386", "pcbios", False, ["x86_64"], False),
        ("x86_64", "efi", False, ["x86_64"], True),
        ("arm64", "efi", False, ["x86_64"], False),
        ("", "", False, ["arm64"], True),
    ],
)
def test_ipxe_menu_fit(buildarch: str, platform: str, long_mode: bool, arches: list[str], fits: bool) -> None:
    assert firmware.ipxe_fits(buildarch, platform, long_mode, arches, ["bios", "uefi"]) is fits


def test_boot_files_pick_loaders_from_the_table(tmp_path: pathlib.Path) -> None:
    catalog = {name: tmp_path / name for name in ("undionly.kpxe", "snponly.efi", "ipxe-arm64.efi")}
    files = BootFiles(root=tmp_path, catalog=catalog, uefi_loader="snponly.efi")
    assert [files.loader_for_arch(c) for c in (0, 7, 9, 16, 11, 19, 6, 10)] == [
        "undionly.kpxe", "snponly.efi", "snponly.efi", "snponly.efi",
        "ipxe-arm64.efi", "ipxe-arm64.efi", None, None,
    ]
    assert files.expected_loader(6) == "i386-efi/ipxe.efi"
    assert "knows none for arch 10" in files.expected_loader(10)


def test_no_other_module_lists_option_93_codes() -> None:
    """A tuple or set of arch codes outside the table is the drift the table replaced."""
    root = pathlib.Path(firmware.__file__).resolve().parents[1]
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "firmware.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(isinstance(op, ast.In) for op in node.ops):
                for comp in node.comparators:
                    if isinstance(comp, (ast.Tuple, ast.Set)) and comp.elts and all(
                        isinstance(e, ast.Constant) and e.value in (6, 7, 9, 11, 15, 16, 19) for e in comp.elts
                    ):
                        offenders.append(f"{path.relative_to(root)}:{node.lineno}")
            if isinstance(node, ast.Name) and node.id in ("ARCH_NAMES", "HTTP_BOOT_ARCHES", "_ARCH_FITS"):
                offenders.append(f"{path.relative_to(root)}:{node.lineno} {node.id}")
    assert offenders == []
