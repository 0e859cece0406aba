"""Liên Thông's integration kit: real servers and services for an agency system's tests, and typed clients for
both sides of the backbone (see the README, "Integrating an agency system")."""

from lienthong_testkit.agency import AgencyClient, Assignment, Refusal
from lienthong_testkit.observe import dossier_log, resolved
from lienthong_testkit.portal import FilingRefused, PortalClient, Receipt
from lienthong_testkit.servers import Servers, ServersUnavailable, free_ports, start_servers
from lienthong_testkit.services import Services, start_services

__all__ = ["AgencyClient", "Assignment", "FilingRefused", "PortalClient", "Receipt", "Refusal", "Servers",
           "ServersUnavailable", "Services", "dossier_log", "free_ports", "resolved", "start_servers",
           "start_services"]
