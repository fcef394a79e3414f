#!/usr/bin/env python3
"""Summarise the output of run (beside this file): medians (min-max) per job x server, ratios,
CPU s/GB, and issue 16's acceptance: vramswapd's CPU per GB at or below nbd-vram's on every job
(at most 0.8x on 4 KiB and 64 KiB), throughput and QD1 latency no worse than the earlier build."""
import csv, json, os, statistics, sys

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/cpu-race/out"
runtime = float(sys.argv[2]) if len(sys.argv) > 2 else 6.0
ramp = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
servers = ["vs", "vb", "nv", "nk", "nn"]
names = {"vs": "vramswapd", "vb": "vramswapd before", "nv": "nbd-vram", "nk": "nbdkit-mem",
         "nn": "nbdkit-null"}
jobs = ["seqwrite", "seqread", "randread", "randwrite", "qd1read", "randrw64k"]

rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
rounds = sorted({r["round"] for r in rows})


def fio(r, j, s):
    try:
        return json.load(open(os.path.join(out, r, j, s + ".json")))["jobs"][0]
    except Exception:
        return None


def metric(j, d):
    """Primary metric per job: MiB/s for 1M/64K, kIOPS for 4K, p50/p99 clat us for qd1."""
    if d is None:
        return None
    if j == "qd1read":
        p = d["read"]["clat_ns"]["percentile"]
        return (p["50.000000"] / 1e3, p["99.000000"] / 1e3)
    bw = d["read"]["bw_bytes"] + d["write"]["bw_bytes"]
    if j in ("randread", "randwrite"):
        return (d["read"]["iops"] + d["write"]["iops"]) / 1e3
    return bw / 2**20


def fmt(vals, nd=1):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a", None
    m = statistics.median(vals)
    return f"{m:.{nd}f} ({min(vals):.{nd}f}-{max(vals):.{nd}f})", m


units = {"seqwrite": "MiB/s", "seqread": "MiB/s", "randread": "kIOPS", "randwrite": "kIOPS",
         "randrw64k": "MiB/s", "qd1read": "us"}
print(f"rounds: {len(rounds)}, runtime {runtime}s + ramp {ramp}s")
print("\n== Throughput / latency: median (min-max) over rounds ==")
hdr = f"{'job':<16}" + "".join(f"{names[s]:>22}" for s in servers) + f"{'vs/nv':>8}{'vs/vb':>8}{'vs/nk':>8}{'vs/nn':>8}"
print(hdr)
med = {}
for j in jobs:
    if j == "qd1read":
        for idx, lab in ((0, "qd1 p50 us"), (1, "qd1 p99 us")):
            line = f"{lab:<16}"
            for s in servers:
                vals = [metric(j, fio(r, j, s)) for r in rounds]
                txt, m = fmt([v[idx] if v else None for v in vals], 1)
                med[(lab, s)] = m
                line += f"{txt:>22}"
            for a, b in (("vs", "nv"), ("vs", "vb"), ("vs", "nk"), ("vs", "nn")):
                x, y = med[(lab, a)], med[(lab, b)]
                line += f"{(x / y if x and y else float('nan')):>8.2f}"
            print(line)
        continue
    line = f"{j + ' ' + units[j]:<16}"
    for s in servers:
        txt, m = fmt([metric(j, fio(r, j, s)) for r in rounds], 1)
        med[(j, s)] = m
        line += f"{txt:>22}"
    for a, b in (("vs", "nv"), ("vs", "vb"), ("vs", "nk"), ("vs", "nn")):
        x, y = med[(j, a)], med[(j, b)]
        line += f"{(x / y if x and y else float('nan')):>8.2f}"
    print(line)

print("\n== Server CPU seconds per GB moved (utime+stime of the server process over the fio run,")
print(f"   bytes scaled by (runtime+ramp)/runtime = {(runtime + ramp) / runtime:.3f} to cover the ramp) ==")
print(f"{'job':<16}" + "".join(f"{names[s]:>22}" for s in servers) + f"{'vs/nv':>8}{'vs/vb':>8}{'vs/nk':>8}{'vs/nn':>8}")
cpumed = {}
for j in jobs:
    line = f"{j:<16}"
    for s in servers:
        vals = []
        for r in rows:
            if r["job"] == j and r["server"] == s and int(r["bytes"]) > 0:
                gb = int(r["bytes"]) * (runtime + ramp) / runtime / 1e9
                vals.append(float(r["cpu_s"]) / gb)
        txt, m = fmt(vals, 2 if j != "qd1read" else 1)
        cpumed[(j, s)] = m
        line += f"{txt:>22}"
    for a, b in (("vs", "nv"), ("vs", "vb"), ("vs", "nk"), ("vs", "nn")):
        x, y = cpumed[(j, a)], cpumed[(j, b)]
        line += f"{(x / y if x and y else float('nan')):>8.2f}"
    print(line)

print("\n== Server CPU utilisation during the run (cpu_s / wall of run, cores) ==")
for j in jobs:
    line = f"{j:<16}"
    for s in servers:
        vals = [float(r["cpu_s"]) / (runtime + ramp) for r in rows if r["job"] == j and r["server"] == s]
        txt, _ = fmt(vals, 2)
        line += f"{txt:>22}"
    print(line)

print("\n== Acceptance (medians; vs = this build, vb = the earlier build, nv = nbd-vram) ==")
limit = {"randread": 0.8, "randwrite": 0.8, "qd1read": 0.8, "randrw64k": 0.8}
for j in jobs:
    x, y = cpumed[(j, "vs")], cpumed[(j, "nv")]
    if x is None or y is None:
        print(f"{j:<16} CPU/GB: n/a")
        continue
    lim = limit.get(j, 1.0)
    print(f"{j:<16} CPU/GB vs/nv {x / y:5.2f} (limit {lim:.1f}) {'ok' if x / y <= lim else 'MISSED'}")
for j in jobs:
    if j == "qd1read":
        for lab in ("qd1 p50 us", "qd1 p99 us"):
            x, y = med[(lab, "vs")], med[(lab, "vb")]
            print(f"{lab:<16} latency vs/vb {x / y:5.2f} {'ok' if x <= y else 'worse'}")
        continue
    x, y = med[(j, "vs")], med[(j, "vb")]
    print(f"{j:<16} throughput vs/vb {x / y:5.2f} {'ok' if x >= y else 'worse'}")

bad = [r for r in rows if r["rc"] != "0"]
print(f"\nfio runs with non-zero rc: {len(bad)}", [(r['round'], r['job'], r['server']) for r in bad])
loads = [float(r["loadavg1"]) for r in rows]
print(f"1-min loadavg at run starts: min {min(loads):.1f} median {statistics.median(loads):.1f} max {max(loads):.1f}")

print("\n== verify (randwrite 4k, crc32c, 256 MiB at offset 3G) ==")
for s in servers:
    p = os.path.join(out, f"verify-{s}.json")
    try:
        txt = open(p).read()
        d = json.loads(txt[txt.index("{"):])["jobs"][0]
        err = open(os.path.join(out, f"verify-{s}.err")).read()
        nverr = err.count("verify:") + err.count("bad magic") + err.count("crc32c")
        print(f"{names[s]:<16} fio error={d['error']} written={d['write']['io_bytes'] >> 20} MiB "
              f"read-back={d['read']['io_bytes'] >> 20} MiB verify-msgs={nverr}")
    except Exception as e:
        print(f"{names[s]:<16} could not parse: {e}")
