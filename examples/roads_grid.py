"""Writes a synthetic town-grid extract for routegate's road-network scale measurements.

    pip install osmium
    python3 examples/roads_grid.py 150 /tmp/grid150.osm.pbf
    /usr/bin/time -f "%e s, peak RSS %M KB" \
        target/release/routegate graph build --osm /tmp/grid150.osm.pbf --data-dir /tmp/grid

SIDE x SIDE junctions about 100 m apart; every tenth street is a primary (east-west) or
secondary (north-south) road, the rest residential; the fifth of every ten east-west streets
is one-way, alternating direction. A uniform grid is the hard case for contraction
hierarchies (no road is naturally more important than its neighbours), so it bounds the
build cost from above rather than predicting a real region's.
"""
import os
import sys

import osmium

side, out = int(sys.argv[1]), sys.argv[2]
if os.path.exists(out):
    os.remove(out)
writer = osmium.SimpleWriter(out)


def node_id(i, j):
    return i * side + j + 1


for i in range(side):
    for j in range(side):
        location = (1.40 + j * 0.00135, 42.40 + i * 0.001)
        writer.add_node(osmium.osm.mutable.Node(id=node_id(i, j), location=location, version=1))
way_id = 1
for i in range(side):
    tags = {"highway": "primary" if i % 10 == 0 else "residential"}
    if i % 10 == 5:
        tags["oneway"] = "yes" if i % 20 == 5 else "-1"
    nodes = [node_id(i, j) for j in range(side)]
    writer.add_way(osmium.osm.mutable.Way(id=way_id, nodes=nodes, tags=tags, version=1))
    way_id += 1
for j in range(side):
    tags = {"highway": "secondary" if j % 10 == 0 else "residential"}
    nodes = [node_id(i, j) for i in range(side)]
    writer.add_way(osmium.osm.mutable.Way(id=way_id, nodes=nodes, tags=tags, version=1))
    way_id += 1
writer.close()
