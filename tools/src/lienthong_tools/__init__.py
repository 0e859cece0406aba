"""Liên Thông's tooling, above the services: local infrastructure (`infra`), the simulator (`simulation`) and the
`lienthong` command (`cli`). The runtime library (`lienthong`, in shared/) sits below the services and never
imports this package."""
