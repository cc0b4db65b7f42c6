#!/usr/bin/env python3
"""Runs open TSP solvers on the instances written by `examples/optimize_bench.rs`.

Usage: optimize_peers.py MANIFEST OUT [--fresh]

MANIFEST is JSON: {"instances": [{"name", "size", "matrix"}...]}. Each matrix file holds the
node count on its first line, then one row of integer metres per line; node 0 is the depot and
every tour is closed. OUT receives {"peers": {solver: status}, "results": [{"instance", "solver",
"cost", "seconds", "cpu", "settings", "tour"}...]}, where cost is recomputed here on the same integer
matrix. Results already in OUT for the same instance, solver and settings are kept rather than
recomputed (instances are seeded, so a name always means the same matrix) unless --fresh is given;
OUT is rewritten after every run, so an interrupted benchmark resumes where it stopped.

Peers (each is optional: one that cannot be imported is reported and skipped):
  lkh       LKH-3 through PyPI `elkai` (reference only: non-commercial licence)
  fast-tsp  PyPI `fast-tsp`, with twice routegate's time target (fast-tsp/2: with the target)
  vroom     PyPI `pyvroom`, one vehicle from and back to the depot
  ortools   PyPI `ortools`, guided local search under a time limit
"""

import json
import sys
import time
from datetime import timedelta


def fast_tsp_seconds(size):
    """fast-tsp's budget: twice routegate's time target (the stretch goal is its quality in half
    its time)."""
    return {10: 0.05, 50: 0.04, 100: 0.1, 200: 0.2, 500: 1.0}.get(size, 2.0)


def ortools_seconds(size):
    """OR-Tools' guided local search limit, generous: it needs far more time than the others."""
    return max(1, size // 100)


def vroom_seconds(size):
    """VROOM's cap (it overruns it: the first solutions are built before the clock is read)."""
    return max(1, size // 100)


def vroom_level(size):
    """Exploration level 5 takes 3 s at 100 stops, 10-25 s at 200 and 2 min at 1,000."""
    return 5 if size <= 100 else 3 if size <= 200 else 1


def elkai_runs(size):
    return 10 if size <= 200 else 3


def read_matrix(path):
    with open(path) as f:
        n = int(f.readline())
        rows = [list(map(int, f.readline().split())) for _ in range(n)]
    return rows


def tour_cost(m, tour):
    return sum(m[tour[i]][tour[(i + 1) % len(tour)]] for i in range(len(tour)))


def normalise(tour, n):
    """Closed tour as a permutation starting at node 0."""
    if len(tour) == n + 1 and tour[0] == tour[-1]:
        tour = tour[:-1]
    if sorted(tour) != list(range(n)):
        raise ValueError(f"not a permutation of 0..{n}: {tour[:10]}...")
    k = tour.index(0)
    return tour[k:] + tour[:k]


def run_lkh(m, size):
    import elkai

    return elkai.DistanceMatrix(m).solve_tsp(runs=elkai_runs(size))


def run_fast_tsp(m, size):
    import fast_tsp

    return list(fast_tsp.find_tour(m, duration_seconds=fast_tsp_seconds(size)))


def run_fast_tsp_half(m, size):
    """fast-tsp with half its budget, i.e. routegate's time target: what it reaches in that time."""
    import fast_tsp

    return list(fast_tsp.find_tour(m, duration_seconds=fast_tsp_seconds(size) / 2))


def run_vroom(m, size):
    import vroom

    problem = vroom.Input()
    problem.set_durations_matrix(profile="car", matrix_input=m)
    problem.add_vehicle(vroom.Vehicle(1, start=0, end=0))
    problem.add_job([vroom.Job(i, location=i) for i in range(1, len(m))])
    solution = problem.solve(
        exploration_level=vroom_level(size),
        nb_threads=1,
        timeout=timedelta(seconds=vroom_seconds(size)),
    )
    steps = solution.routes
    jobs = [int(j) for j, t in zip(steps["id"], steps["type"]) if t == "job"]
    return [0] + jobs


def run_ortools(m, size):
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2

    n = len(m)
    manager = pywrapcp.RoutingIndexManager(n, 1, 0)
    routing = pywrapcp.RoutingModel(manager)

    def distance(i, j):
        return m[manager.IndexToNode(i)][manager.IndexToNode(j)]

    transit = routing.RegisterTransitCallback(distance)
    routing.SetArcCostEvaluatorOfAllVehicles(transit)
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
    params.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    )
    params.time_limit.FromSeconds(ortools_seconds(size))
    solution = routing.SolveWithParameters(params)
    tour, index = [], routing.Start(0)
    while not routing.IsEnd(index):
        tour.append(manager.IndexToNode(index))
        index = solution.Value(routing.NextVar(index))
    return tour


PEERS = {
    "lkh": ("elkai", run_lkh),
    "fast-tsp": ("fast_tsp", run_fast_tsp),
    "fast-tsp/2": ("fast_tsp", run_fast_tsp_half),
    "vroom": ("vroom", run_vroom),
    "ortools": ("ortools", run_ortools),
}


def available():
    status = {}
    for name, (module, _) in PEERS.items():
        try:
            __import__(module)
            status[name] = "ok"
        except Exception as e:  # noqa: BLE001 - any import failure means "skip this peer"
            status[name] = f"unavailable: {e}"
            print(f"peer {name}: NOT AVAILABLE ({e}); continuing without it", file=sys.stderr)
    return status


def settings(name, size):
    """What a result depends on besides the instance; a change invalidates cached results."""
    return {
        "lkh": lambda: f"runs={elkai_runs(size)}",
        "fast-tsp": lambda: f"seconds={fast_tsp_seconds(size)}",
        "fast-tsp/2": lambda: f"seconds={fast_tsp_seconds(size) / 2}",
        "vroom": lambda: f"level={vroom_level(size)},timeout={vroom_seconds(size)}",
        "ortools": lambda: f"gls,seconds={ortools_seconds(size)}",
    }[name]()


def main():
    manifest_path, out_path = sys.argv[1], sys.argv[2]
    fresh = "--fresh" in sys.argv[3:]
    with open(manifest_path) as f:
        manifest = json.load(f)
    cached = {}
    if not fresh:
        try:
            with open(out_path) as f:
                for r in json.load(f)["results"]:
                    cached[(r["instance"], r["solver"], r.get("settings"))] = r
        except (OSError, ValueError, KeyError):
            pass
    status = available()
    results = []
    for inst in manifest["instances"]:
        m = None
        for name, (_, run) in PEERS.items():
            if status[name] != "ok":
                continue
            key = (inst["name"], name, settings(name, inst["size"]))
            if key in cached:
                results.append(cached[key])
                continue
            m = m or read_matrix(inst["matrix"])
            t0, cpu0 = time.perf_counter(), time.process_time()
            try:
                tour = normalise(list(run(m, inst["size"])), len(m))
            except Exception as e:  # noqa: BLE001 - report, keep benchmarking the others
                print(f"peer {name} failed on {inst['name']}: {e}", file=sys.stderr)
                continue
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            cost = tour_cost(m, tour)
            results.append(
                {
                    "instance": inst["name"],
                    "solver": name,
                    "cost": cost,
                    "seconds": seconds,
                    "cpu": cpu,
                    "settings": key[2],
                    "tour": tour,
                }
            )
            print(f"  {inst['name']:<24} {name:<9} {cost:>10} {seconds:8.3f}s", file=sys.stderr)
            write(out_path, status, results + [r for k, r in cached.items() if k[0] != inst["name"]])
    write(out_path, status, results)


def write(out_path, status, results):
    with open(out_path, "w") as f:
        json.dump({"peers": status, "results": results}, f)


if __name__ == "__main__":
    main()
