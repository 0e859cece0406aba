"""pytest plugin (entry point `pytest11`): Liên Thông's real broker, store and services for an agency system's tests.

Fixtures:
- `lienthong_servers` (session): Kafka + a MongoDB-compatible server with Liên Thông's topics (`Servers`).
- `lienthong_services` (session): the services, each its own process on a free port (`Services`); which ones:
  `--lienthong-services=intake,routing[,stats,notify]` (default intake,routing).
- `agency_client`: `agency_client("land-registry")` -> an `AgencyClient` with that agency's own credentials.
- `portal_client`: a `PortalClient` filing through intake and acting for citizens as the national portal.
A server or service that cannot be had fails the test with the reason; nothing is ever skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lienthong.auth import SUBMIT
from lienthong_testkit.agency import AgencyClient
from lienthong_testkit.portal import PORTAL, PortalClient
from lienthong_testkit.servers import Servers, ServersUnavailable, start_servers
from lienthong_testkit.services import Services, start_services


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--lienthong-services", default="intake,routing",
                     help="the Liên Thông services `lienthong_services` starts (intake,routing,stats,notify)")


@pytest.fixture(scope="session")
def lienthong_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    try:
        with start_servers(tmp_path_factory.mktemp("lienthong-servers")) as servers:
            yield servers
    except ServersUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def lienthong_services(lienthong_servers: Servers, tmp_path_factory: pytest.TempPathFactory,
                       pytestconfig: pytest.Config) -> Iterator[Services]:
    names = tuple(n.strip() for n in pytestconfig.getoption("--lienthong-services").split(",") if n.strip())
    try:
        with start_services(lienthong_servers, tmp_path_factory.mktemp("lienthong-services"), names) as services:
            yield services
    except ServersUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def agency_client(lienthong_servers: Servers) -> Callable[[str], AgencyClient]:
    """`async with agency_client("commune-one-stop") as agency: ...` (any agency system of the registry)."""
    return lambda name: AgencyClient(name, lienthong_servers.client(name))


@pytest.fixture
def portal_client(lienthong_servers: Servers, lienthong_services: Services) -> PortalClient:
    """`async with portal_client as portal: receipt = await portal.file({...})`."""
    return PortalClient(lienthong_services.urls["intake"], lienthong_services.token(PORTAL, [SUBMIT]),
                        lienthong_services.portal, lienthong_servers.client(PORTAL),
                        stats_url=lienthong_services.urls.get("stats"))
