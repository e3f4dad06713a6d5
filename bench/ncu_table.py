#!/usr/bin/env python3
"""Per-kernel device time from an Nsight Compute CSV (`ncu --csv --metrics
gpu__time_duration.sum,dram__bytes_read.sum ...`): for each kernel name and
grid, the launches, total and mean microseconds, share of all time and the
DRAM bytes read per launch, largest first; with
sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active in
the CSV too, also the mean tensor-pipe activity (% of its peak).

    python3 bench/ncu_table.py profile.csv
"""

import collections
import csv
import sys

UNIT_US = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}
TENSOR = "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"
UNIT_BYTES = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def main():
    lines = open(sys.argv[1]).read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('"ID"'))
    launches = collections.defaultdict(dict)
    for row in csv.DictReader(lines[start:]):
        key = (row["ID"], row["Kernel Name"].split("(")[0], row.get("Grid Size", ""))
        value = float(row["Metric Value"].replace(",", ""))
        unit = row.get("Metric Unit", "")
        if row["Metric Name"] == "gpu__time_duration.sum":
            launches[key]["us"] = value * UNIT_US.get(unit, 1.0)
        elif row["Metric Name"] == "dram__bytes_read.sum":
            launches[key]["bytes"] = value * UNIT_BYTES.get(unit, 1.0)
        elif row["Metric Name"] == TENSOR:
            launches[key]["tensor"] = value
    groups = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for (_, name, grid), m in launches.items():
        g = groups[(name, grid)]
        g[0] += 1
        g[1] += m.get("us", 0.0)
        g[2] += m.get("bytes", 0.0)
        g[3] += m.get("tensor", 0.0)
    with_tensor = any("tensor" in m for m in launches.values())
    total = sum(g[1] for g in groups.values()) or 1.0
    print(f"{'kernel':<20} {'grid':<16} {'count':>6} {'total us':>10} {'mean us':>8} {'share':>6} {'MB read':>8}"
          + (f" {'tensor %':>8}" if with_tensor else ""))
    for (name, grid), (count, us, nbytes, tensor) in sorted(groups.items(), key=lambda kv: -kv[1][1])[:40]:
        print(f"{name:<20} {grid:<16} {count:>6} {us:>10.1f} {us / count:>8.2f} {100 * us / total:>5.1f}% "
              f"{nbytes / count / 1e6:>8.3f}" + (f" {tensor / count:>8.1f}" if with_tensor else ""))
    print(f"{'all':<37} {sum(g[0] for g in groups.values()):>6} {total:>10.1f}")


if __name__ == "__main__":
    main()
