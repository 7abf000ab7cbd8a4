"""Container networking: the kernel-side pieces the network service
(dockyard/daemon/networks.py) puts together, each tested against the real kernel.

    ipam.py      choose a subnet that collides with no host route (nor docker0's), and hand
                 out its addresses (docker's messages when it is full)
    links.py     bridges and veth pairs through netlink (pyroute2); the container's end is
                 made inside its namespace and configured from a thread that setns()es there
    bridge.py    one bridge network: its device, address pool and endpoints
    firewall.py  dockyard's own nftables table, rewritten whole in one transaction: outbound
                 masquerading, published ports (DNAT, no proxy), isolation between networks,
                 internal networks, DNS redirection to the embedded server
    ports.py     published-port specs, and the sockets that hold host ports for containers
    dns.py       the embedded DNS server: one UDP socket for all user networks
    etcfiles.py  a container's /etc/hosts, /etc/resolv.conf (the host's, without loopback
                 resolvers; the embedded server on user networks) and /etc/hostname
"""
