"""Container networking (issue 8), built bottom-up. So far, the pieces the default bridge
stands on, each tested against the real kernel; the container service does not connect
containers to the bridge yet:

    ipam.py      choose a subnet that collides with no host route (nor docker0's), and hand
                 out its addresses (docker's messages when it is full)
    links.py     bridges and veth pairs through netlink (pyroute2); configuring an interface
                 inside a network namespace from a thread of its own that setns()es there
    nat.py       dockyard's own nftables table: outbound masquerading per subnet, created
                 and removed whole (``nft -j``: JSON in, JSON out)
    etcfiles.py  a container's /etc/hosts, /etc/resolv.conf (the host's, without loopback
                 resolvers) and /etc/hostname (bound into every container already)
    bridge.py    the default bridge network: made on first use (--bip, the bridge's own
                 subnet after a restart, or a free one), endpoints (veth, address, docker's
                 MAC), restore after a daemon restart, given back with no endpoint left
"""
