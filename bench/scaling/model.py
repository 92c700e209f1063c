#!/usr/bin/env python3
"""Concord's capacity model: from figures measured on this machine to a deployment's shape.

Reads the measured figures (``inputs.json`` beside this file: each figure with where it was
measured) and a usage profile (the same file: what one connected device does), and prints, for
deployments from one thousand to a million connected devices, how many nodes and databases that
takes and which resource saturates first. SCALING.md is written from its output.

    bench/scaling/model.py                 # the table, from inputs.json
    bench/scaling/model.py --json          # the same, machine-readable
    bench/scaling/model.py --set redis.per_document_channels=true --set postgres.commits_per_s=40000
                                           # a what-if: any input overridden by its dotted path

Every number it prints is arithmetic on the inputs; the assumptions are all in the profile, so a
reader who disagrees with one changes it and reruns. Headroom: a resource is "full" at
``headroom`` of its measured capacity (measurements were taken on a shared machine, and a
deployment needs room for bursts and failover).
"""

import argparse
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def load(path):
    with open(path) as f:
        return json.load(f)


def device_cost(inputs):
    """What one connected device of the profile costs a node: CPU in cores, resident KiB."""
    node, profile = inputs["node"], inputs["profile"]
    # CPU: each update is received, stored (in a group commit) and relayed to its observers; each
    # push is stored and announced; and every open connection costs a little while idle.
    updates_per_device = profile["active_share"] * profile["updates_per_active_device_per_s"]
    cpu_ms_per_s = updates_per_device * (
        node["cpu_ms_per_update_stored"] + profile["observers_per_update"] * node["cpu_ms_per_delivery"]
    )
    cpu_ms_per_s += profile["oplog_pushes_per_device_per_s"] * node["cpu_ms_per_push"]
    cpu_ms_per_s += profile["connections_per_device"] * node.get("cpu_ms_per_idle_connection_per_s", 0)
    # Memory: resident bytes per idle connection (Y1).
    return {"cores": cpu_ms_per_s / 1000, "kib": node["kib_per_connection"] * profile["connections_per_device"]}


def predict(inputs, devices, nodes=1):
    """What `devices` connected devices on `nodes` nodes should cost in all: cores and resident MiB
    (each node's base plus the devices'), for bench/scaling/mixed-run to set beside a measurement."""
    cost = device_cost(inputs)
    return {
        "cores": devices * cost["cores"],
        "rss_mib": nodes * inputs["node"]["base_rss_mib"] + devices * cost["kib"] / 1024,
    }


def per_node(inputs):
    """What one node of the measured size holds, each limit on its own."""
    node, profile = inputs["node"], inputs["profile"]
    h = inputs["headroom"]
    cost = device_cost(inputs)
    # Memory: on the node's memory less the base.
    mem_devices = (node["ram_mib"] - node["base_rss_mib"]) * 1024 * h / cost["kib"]
    cpu_devices = node["cores"] * h / cost["cores"]
    fd_devices = node["fd_limit"] * h / profile["connections_per_device"]
    return {"memory": mem_devices, "cpu": cpu_devices, "descriptors": fd_devices}


def database_load(inputs, devices, nodes):
    """Commits and rows per second the devices ask of the one database, against its capacity."""
    profile, pg = inputs["profile"], inputs["postgres"]
    h = inputs["headroom"]
    updates = devices * profile["active_share"] * profile["updates_per_active_device_per_s"]
    pushes = devices * profile["oplog_pushes_per_device_per_s"]
    # Each node's Yjs writer commits at most once per commit latency, whatever the update rate
    # (group commit), so Yjs commits/s are bounded by nodes x (1 / commit latency); op-log pushes
    # commit one each (unless group-committed across devices: `oplog_group_commit`).
    yjs_commits = min(updates, nodes * 1000 / pg["commit_latency_ms"])
    push_commits = pushes if not inputs["node"]["oplog_group_commit"] else min(pushes, nodes * 1000 / pg["commit_latency_ms"])
    rows = updates + pushes * profile["ops_per_push"]
    return {
        "commits_per_s": yjs_commits + push_commits,
        "commits_capacity": pg["commits_per_s"] * h,
        "rows_per_s": rows,
        "rows_capacity": pg["rows_per_s"] * h,
    }


def bus_load(inputs, devices, nodes):
    """Messages per second through Redis: each stored update is published once and delivered to
    every subscribed node. Today every node subscribes to one documents channel, so each update
    reaches all nodes; with per-document channels (`per_document_channels`, the next step) only
    the nodes holding its observers."""
    profile = inputs["profile"]
    updates = devices * profile["active_share"] * profile["updates_per_active_device_per_s"]
    receivers = nodes
    if inputs["redis"]["per_document_channels"]:
        receivers = min(nodes, profile["observers_per_update"] + 1)
    return {"messages_per_s": updates * (1 + receivers), "capacity": inputs["redis"]["messages_per_s"] * inputs["headroom"]}


def plan(inputs, devices):
    limits = per_node(inputs)
    per = min(limits.values())
    nodes = max(1, math.ceil(devices / per))
    db = database_load(inputs, devices, nodes)
    bus = bus_load(inputs, devices, nodes) if nodes > 1 else None
    db_commit_share = db["commits_per_s"] / db["commits_capacity"]
    db_row_share = db["rows_per_s"] / db["rows_capacity"]
    databases = max(1, math.ceil(max(db_commit_share, db_row_share)))
    # Saturating first: the resource closest to full at this size.
    shares = {f"node {k}": devices / (v * nodes) for k, v in limits.items()}
    shares["database commits"] = db_commit_share / databases
    shares["database rows"] = db_row_share / databases
    if bus:
        shares["bus messages"] = bus["messages_per_s"] / bus["capacity"]
    first = max(shares, key=shares.get)
    return {
        "devices": devices,
        "nodes": nodes,
        "databases": databases,
        "node_limit_devices": {k: round(v) for k, v in limits.items()},
        "database": {k: round(v) for k, v in db.items()},
        "bus": {k: round(v) for k, v in bus.items()} if bus else None,
        "saturates_first": first,
        "shares": {k: round(v, 2) for k, v in shares.items()},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", default=os.path.join(HERE, "inputs.json"))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="override an input (JSON value)")
    args = parser.parse_args()
    inputs = load(args.inputs)
    for assignment in args.set:
        path, _, value = assignment.partition("=")
        *parents, leaf = path.split(".")
        target = inputs
        for key in parents:
            target = target[key]
        if leaf not in target:
            parser.error(f"no input {path}")
        target[leaf] = json.loads(value)
    rows = [plan(inputs, d) for d in inputs["deployments"]]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'devices':>9} {'nodes':>6} {'DBs':>4} {'DB commits/s':>13} {'DB rows/s':>10} {'bus msg/s':>10}  saturates first (share of capacity)")
    for r in rows:
        bus = r["bus"]["messages_per_s"] if r["bus"] else "-"
        print(
            f"{r['devices']:>9} {r['nodes']:>6} {r['databases']:>4} {r['database']['commits_per_s']:>13} "
            f"{r['database']['rows_per_s']:>10} {bus:>10}  {r['saturates_first']} ({r['shares'][r['saturates_first']]})"
        )
    limits = rows[0]["node_limit_devices"]
    print("one node holds at most: " + ", ".join(f"{v} devices by {k}" for k, v in limits.items()))


if __name__ == "__main__":
    main()
