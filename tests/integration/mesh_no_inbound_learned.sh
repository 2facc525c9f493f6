#!/usr/bin/env bash
# mesh_no_inbound.sh with the on-prem PoP's firewall but without --no-inbound: the others learn
# that it cannot be dialled and use the connections and tunnels it opens (docs/gossip.md,
# "PoPs that cannot be dialled").
LEARNED=1 exec bash "$(dirname "$0")/mesh_no_inbound.sh"
