"""Nothing of our own: every fixture comes from lienthong-testkit's pytest plugin (lienthong_servers,
lienthong_services, portal_client, agency_client)."""
