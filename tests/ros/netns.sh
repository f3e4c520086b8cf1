#!/usr/bin/env bash
# Run a command in a private network namespace where DDS can reach loopback only:
#   tests/ros/netns.sh CMD ARGS...
# Loopback up with multicast (Fast DDS discovery), ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a fixed
# ROS_DOMAIN_ID (override with META_OOD_ROS_DOMAIN_ID). Root uses `unshare --net`; others `unshare -r --net`.
set -euo pipefail
if [ "$(id -u)" = 0 ]; then wrap=(unshare --net); else wrap=(unshare --map-root-user --net); fi
exec "${wrap[@]}" -- bash -c '
  set -e
  ip link set lo up
  ip link set lo multicast on
  ip route add 224.0.0.0/4 dev lo
  export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID="${META_OOD_ROS_DOMAIN_ID:-42}" META_OOD_ROS_NETNS=1
  exec "$@"' netns "$@"
