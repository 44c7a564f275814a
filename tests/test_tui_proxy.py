"""Issue 14 in the TUI: the package proxy's figures in the header, per machine in its details,
the no-uplink warning, and no `PROXY●` for a proxy that does not run.

Pilot tests at 80x24 and wide on the recorded-style scenario (tests/tui_scenario.py); the
events are built by the services' constructors (`ProxyStats`, `ProxyService.describe()`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import tui_scenario as sc
from package_lab import service_context
from textual.widgets import Static

from pxetui.model.events import DhcpAck, ProxyStats
from pxetui.model.registry import Registry
from pxetui.services.context import ServiceSettings
from pxetui.services.proxy.server import ProxyService
from pxetui.session import Session
from pxetui.tui.app import PxetuiApp
from pxetui.tui.screens.detail import DetailScreen

RUNNING = {"state": "running", "uplink": True, "url": "http://198.18.0.1:3142"}


pytestmark = pytest.mark.usefixtures("utc")  # times on screen are UTC, whatever the host says


def header(app: PxetuiApp) -> list[str]:
    return str(sc.main_screen(app).query_one("#status", Static).render()).splitlines()


async def settle(pilot: Any, app: PxetuiApp) -> None:
    app.flush_updates()
    await pilot.pause()
    await pilot.pause()


def test_the_registry_credits_proxy_bytes_to_the_machine_holding_the_address() -> None:
    registry = Registry()
    a, b = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
    registry.apply(DhcpAck(mac=a, ip="198.18.0.50", arch=7, vendor_class="PXEClient"))

    def stats(**clients: int) -> ProxyStats:
        served = sum(clients.values())
        return ProxyStats(
            url="http://198.18.0.1:3142", upstream_bytes=10, served_bytes=served, from_cache=served - 10,
            cache_bytes=10, files=1, refused=0, clients={k.replace("_", "."): v for k, v in clients.items()},
        )  # fmt: skip

    registry.apply(stats(**{"198_18_0_50": 1000, "198_18_0_9": 77}))
    assert registry.machines[a].proxy_bytes == 1000
    assert registry.proxy is not None and registry.proxy.served_bytes == 1077
    # The address moves to another PC: only what it fetched since counts for the new holder.
    registry.apply(DhcpAck(mac=b, ip="198.18.0.50", arch=7, vendor_class="PXEClient"))
    registry.apply(stats(**{"198_18_0_50": 1500, "198_18_0_9": 77}))
    assert (registry.machines[a].proxy_bytes, registry.machines[b].proxy_bytes) == (1000, 500)
    assert registry.to_document()["machines"][0]["proxy_bytes"] == 1000  # kept across restarts


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
async def test_the_header_and_details_show_the_proxys_figures(session: Session, size: tuple[int, int]) -> None:
    app = sc.make_app(session)
    async with app.run_test(size=size) as pilot:
        sc.boot_events(session)
        sc.proxy_ready(session, RUNNING)
        sc.publish(session, 90, sc.proxy_stats())
        await settle(pilot, app)
        status, summary = header(app)
        assert "PROXY●" in status
        assert "1 failed" in summary  # the room's counts keep their place
        if size[0] == 80:
            assert summary.endswith("pkg ↓1.2G ↑412M"), summary
        else:
            assert "proxy 198.18.0.1:3142 upstream ✓" in summary, summary
            assert "↓1.2G served (824M from cache)  ↑412M from upstream  cache 430M" in summary
        assert all(len(line) <= size[0] - 2 for line in (status, summary))
        assert not sc.main_screen(app).query_one("#uplink", Static).has_class("shown")
        app.push_screen(DetailScreen(session, sc.PC_BIOS, lambda: sc.NOW))
        await pilot.pause()
        info = str(app.screen.query_one("#detail-info", Static).render())
        assert "1200MB through the package proxy" in info
        app.pop_screen()
        await pilot.pause()
        app.push_screen(DetailScreen(session, sc.PC_WAITING, lambda: sc.NOW))
        await pilot.pause()
        assert "none through the package proxy yet" in str(app.screen.query_one("#detail-info", Static).render())


async def test_an_unreachable_upstream_is_said_in_the_header(session: Session) -> None:
    app = sc.make_app(session)
    async with app.run_test(size=(120, 36)) as pilot:
        sc.boot_events(session)
        sc.proxy_ready(session, RUNNING)
        sc.publish(session, 90, dataclasses.replace(sc.proxy_stats(), upstream_ok=False))
        await settle(pilot, app)
        assert "upstream ✗" in header(app)[1]
        status = sc.main_screen(app)._status_line(118)
        assert [status.plain[span.start : span.end] for span in status.spans if span.style == "yellow"] == ["●"]


async def test_no_proxy_dot_when_the_proxy_is_off(session: Session) -> None:
    service = ProxyService(service_context(ServiceSettings(package_proxy="off")))
    facts = service.describe()
    assert facts["state"] == "off"
    app = sc.make_app(session)
    async with app.run_test(size=(120, 36)) as pilot:
        sc.boot_events(session)
        sc.proxy_ready(session, facts)
        await settle(pilot, app)
        status = header(app)[0]
        assert "PROXY●" not in status and "PROXY off" in status, status
        assert "HTTP●" in status
        assert "pkg " not in header(app)[1] and "proxy " not in header(app)[1]


@pytest.mark.parametrize("size", [(80, 24), (120, 36)])
async def test_the_no_uplink_warning_is_in_the_header_until_a_route_comes(
    session: Session, size: tuple[int, int]
) -> None:
    app = sc.make_app(session)
    async with app.run_test(size=size) as pilot:
        sc.boot_events(session)
        sc.proxy_ready(session, {**RUNNING, "uplink": False, "warning": sc.NO_UPLINK})
        await settle(pilot, app)
        warning = sc.main_screen(app).query_one("#uplink", Static)
        assert warning.has_class("shown")
        text = str(warning.render()).replace("\n", " ")
        assert "No route to the internet: network installs will fail; use ISO-based profiles or a local mirror" in text
        assert warning.region.height >= 1 and warning.region.bottom <= size[1]
        # Still there when the proxy's figures come (they say no uplink too), gone with a route.
        sc.publish(session, 90, sc.proxy_stats(uplink=False))
        await settle(pilot, app)
        assert warning.has_class("shown")
        assert "upstream ✗" in header(app)[1] or size[0] < 110
        sc.publish(session, 92, sc.proxy_stats(uplink=True))
        await settle(pilot, app)
        assert not warning.has_class("shown")
