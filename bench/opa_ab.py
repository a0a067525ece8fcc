"""OPA CPU per decision of two or more OPA set-ups, interleaved: ``python -m bench.opa_ab``.

What a lever is worth on this shared 2-core machine is only visible as a ratio of runs
taken seconds apart, so this runs the same corpus (``bench/corpus.py``, the 40 bodies
opa-direct sends) against each set-up back to back, the order rotating per round,
through the bench's own load generator (``bench/load.py``, aiohttp, closed loop) and
its CPU accounting (``utime + stime`` of each OPA process at the edges of the timed
window, divided by the decisions in it). It prints one line per round and the median
ratio of every lane to the first; ``--json`` writes everything.

A lane is ``NAME[,key=value...]``; keys (repeatable where it makes sense):

- ``bundle=PATH``   a bundle (directory) to serve; default the pack (``rego/``);
- ``flag=ARG``      an argument added to ``opa run`` (``flag=--optimize-store-for-read-speed``);
- ``env=K=V``       an environment variable for OPA (``env=GOGC=400``);
- ``bodies=FILE``   a JSON list of request bodies (one per corpus case) to send
  instead of the corpus' own;
- ``path=P``        the Data API path (default ``/v1/data/aarm/main/decision``);
- ``opa=LANE``      send to LANE's OPA process instead of starting one (same process,
  other bodies);
- ``check=0``       leave the lane out of the answer check;
- ``via=service`` / ``via=forward``  time Decide through a real service
  (``aarm_pdp serve``) or the bare forwarder (``bench/forward_floor.py``) in front of
  the lane's OPA instead of POSTing to OPA; the line then shows the front end's CPU
  per decision too, and the sum;
- ``transport=tcp`` / ``transport=unix``  how that front end reaches OPA (every OPA
  here listens on a loopback port and on a unix socket).

Before timing, every case is sent to every checked lane and the ``result`` documents
must be identical (the whole decision: verdict, reasons, matched rules, risk, ...).
No lane uses the bench's default OPA settings (``run.OPA_FLAGS``/``OPA_ENV``): a lane
runs exactly what its keys say.

Examples::

  python -m bench.opa_ab --lane base --lane gogc,env=GOGC=400
  python -m bench.opa_ab --lane base,bundle=/tmp/old/rego --lane new,bundle=rego
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.run import ENTRYPOINT_PATH, REGO, LoadGen, stack, summarize


@dataclass
class LaneSpec:
    name: str
    bundles: list[Path] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    bodies: Path | None = None
    path: str = ENTRYPOINT_PATH
    opa: str | None = None
    check: bool = True
    via: str | None = None
    transport: str = "tcp"

    @classmethod
    def parse(cls, text: str) -> LaneSpec:
        name, *items = text.split(",")
        spec = cls(name)
        for item in items:
            key, _, value = item.partition("=")
            if key == "bundle":
                spec.bundles.append(Path(value))
            elif key == "flag":
                spec.flags.append(value)
            elif key == "env":
                k, _, v = value.partition("=")
                spec.env[k] = v
            elif key == "bodies":
                spec.bodies = Path(value)
            elif key == "path":
                spec.path = value
            elif key == "opa":
                spec.opa = value
            elif key == "check":
                spec.check = value not in ("0", "false", "no")
            elif key == "via" and value in ("service", "forward"):
                spec.via = value
            elif key == "transport" and value in ("tcp", "unix"):
                spec.transport = value
            else:
                raise SystemExit(f"lane {name}: unknown key {key!r}")
        return spec


def _post(url: str, body: bytes) -> Any:
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["result"]


def _peak_rss_mib(pid: int) -> float | None:
    """VmHWM (peak resident set) of ``pid`` in MiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def check_answers(
    lanes: list[LaneSpec], urls: dict[str, str], bodies: dict[str, list[bytes]]
) -> int:
    """Every checked lane answers every case with the same result document."""
    checked = [ln for ln in lanes if ln.check and ln.via is None]
    if len(checked) < 2:
        return 0
    n = len(bodies[checked[0].name])
    for i in range(n):
        first = _post(urls[checked[0].name], bodies[checked[0].name][i])
        for ln in checked[1:]:
            other = _post(urls[ln.name], bodies[ln.name][i])
            if other != first:
                raise SystemExit(
                    f"case {i}: lane {ln.name} answers differently from {checked[0].name}:\n"
                    f"{json.dumps(first, sort_keys=True)[:1500]}\n"
                    f"{json.dumps(other, sort_keys=True)[:1500]}"
                )
    return n


def run(
    lanes: list[LaneSpec], rounds: int, seconds: float, concurrency: int, warmup: float
) -> dict[str, Any]:
    from bench.corpus import CORPUS

    cases = list(CORPUS)
    default_bodies = [c.opa_body() for c in cases]
    bodies = {
        ln.name: (
            [b.encode() for b in json.loads(ln.bodies.read_text())] if ln.bodies else default_bodies
        )
        for ln in lanes
    }
    lanes_by = {ln.name: ln for ln in lanes}
    gen = LoadGen()
    fronts: dict[str, Any] = {}
    peak: dict[str, float | None] = {}
    try:
        with stack() as st:
            procs: dict[str, Any] = {}
            bases: dict[str, str] = {}
            for ln in lanes:
                if ln.opa is None:
                    bundles = ln.bundles or [REGO]
                    if len(bundles) != 1:
                        raise SystemExit(f"lane {ln.name}: one bundle per lane")
                    proc, base = st.opa(bundles[0], flags=tuple(ln.flags), env=ln.env)
                    procs[ln.name], bases[ln.name] = proc, base
            for ln in lanes:
                if ln.opa is not None:
                    procs[ln.name], bases[ln.name] = procs[ln.opa], bases[ln.opa]
            urls = {ln.name: bases[ln.name] + ln.path for ln in lanes}
            checked = check_answers(lanes, urls, bodies)
            fronts.clear()
            for ln in lanes:
                if ln.via is None:
                    continue
                opa_url = st.unix_url(procs[ln.name]) if ln.transport == "unix" else bases[ln.name]
                front_proc, target = (st.service if ln.via == "service" else st.forward)(opa_url)
                fronts[ln.name] = front_proc
                urls[ln.name] = f"grpc://{target}"
            files = {}
            for ln in lanes:
                if ln.bodies:
                    files[ln.name] = str(ln.bodies)
            # One role per OPA process; a lane's OPA CPU is its process' ticks.
            roles = {ln.name: f"opa:{ln.opa or ln.name}" for ln in lanes}
            pids = {roles[ln.name]: procs[ln.name].pid for ln in lanes}
            pids.update({f"front:{name}": proc.pid for name, proc in fronts.items()})
            gen.ask(
                op="setup",
                targets=urls,
                cases=[c.name for c in cases],
                pids={**pids, "generator": gen.pid},
                bodies=files,
            )
            if fronts:
                got = gen.ask(op="verify")
                seen: dict[str | None, dict[str, list[str]]] = {}
                for name in fronts:
                    verdicts = [v.split(":")[0] for v in got[name]]
                    seen.setdefault(lanes_by[name].via, {})[name] = verdicts
                for group in seen.values():
                    if len({tuple(v) for v in group.values()}) > 1:
                        raise SystemExit(f"front ends answer different verdicts: {group}")
            for ln in lanes:
                gen.ask(op="closed", lane=ln.name, concurrency=concurrency, duration=warmup)
            names = [ln.name for ln in lanes]
            per_round: list[dict[str, dict[str, Any]]] = []
            for r in range(rounds):
                k = r % len(names)
                got = {}
                for name in names[k:] + names[:k]:
                    raw = gen.ask(op="closed", lane=name, concurrency=concurrency, duration=seconds)
                    s = summarize([raw], "")
                    clk = raw["clk_tck"]
                    n = max(1, raw["count"])
                    s["opa_cpu_us_per_decision"] = round(
                        raw["ticks"].get(roles[name], 0) / clk / n * 1e6, 1
                    )
                    if name in fronts:
                        s["front_cpu_us_per_decision"] = round(
                            raw["ticks"].get(f"front:{name}", 0) / clk / n * 1e6, 1
                        )
                    got[name] = s
                per_round.append(got)
                line = " | ".join(
                    f"{n} {got[n]['opa_cpu_us_per_decision']:7.1f} µs"
                    + (f" +front {got[n]['front_cpu_us_per_decision']:.0f}" if n in fronts else "")
                    + f" {got[n]['throughput_rps']:6.0f}/s"
                    f" p50 {got[n]['p50_ms']:.2f} other {got[n]['other_cores']:.2f}"
                    for n in names
                )
                print(f"round {r + 1}: {line}", file=sys.stderr, flush=True)
            peak = {ln.name: _peak_rss_mib(procs[ln.name].pid) for ln in lanes}
    finally:
        gen.close()
    base = names[0]
    out: dict[str, Any] = {"lanes": {}, "rounds": rounds, "seconds": seconds}
    out["concurrency"] = concurrency
    out["answers_checked"] = checked
    for name in names:
        cpu = [g[name]["opa_cpu_us_per_decision"] for g in per_round]
        ratio = [
            g[name]["opa_cpu_us_per_decision"] / g[base]["opa_cpu_us_per_decision"]
            for g in per_round
        ]
        p50 = [g[name]["p50_ms"] / g[base]["p50_ms"] for g in per_round]
        out["lanes"][name] = {
            "opa_cpu_us_per_decision": cpu,
            "median_opa_cpu_us": round(statistics.median(cpu), 1),
            f"ratio_opa_cpu_vs_{base}": [round(x, 3) for x in ratio],
            "median_ratio": round(statistics.median(ratio), 3),
            "median_ratio_p50": round(statistics.median(p50), 3),
            "throughput_rps": [g[name]["throughput_rps"] for g in per_round],
            "other_cores": [g[name]["other_cores"] for g in per_round],
            "opa_peak_rss_mib": peak[name],
        }
        if name in fronts:
            front = [g[name]["front_cpu_us_per_decision"] for g in per_round]
            both = [f + o for f, o in zip(front, cpu, strict=True)]
            base_both = [
                g[base].get("front_cpu_us_per_decision", 0) + g[base]["opa_cpu_us_per_decision"]
                for g in per_round
            ]
            out["lanes"][name].update(
                front_cpu_us_per_decision=front,
                median_front_cpu_us=round(statistics.median(front), 1),
                median_ratio_front=round(
                    statistics.median(
                        f / g[base]["front_cpu_us_per_decision"]
                        for f, g in zip(front, per_round, strict=True)
                        if g[base].get("front_cpu_us_per_decision")
                    ),
                    3,
                )
                if fronts.get(base)
                else None,
                median_ratio_front_plus_opa=round(
                    statistics.median(b / a for a, b in zip(base_both, both, strict=True)), 3
                ),
            )
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lane", action="append", required=True, help="NAME[,key=value...]")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--json", type=Path, help="write the result here")
    args = p.parse_args()
    lanes = [LaneSpec.parse(x) for x in args.lane]
    if len({ln.name for ln in lanes}) != len(lanes):
        raise SystemExit("lane names must differ")
    res = run(lanes, args.rounds, args.seconds, args.concurrency, args.warmup)
    base = lanes[0].name
    for name, lane in res["lanes"].items():
        front = ""
        if "median_front_cpu_us" in lane:
            front = (
                f"; front end {lane['median_front_cpu_us']:.0f} µs (vs {base} "
                f"{lane['median_ratio_front']}), front+OPA vs {base} "
                f"{lane['median_ratio_front_plus_opa']}"
            )
        print(
            f"{name:>16}: OPA CPU median {lane['median_opa_cpu_us']:7.1f} µs/decision, "
            f"vs {base} median {lane['median_ratio']:.3f} "
            f"(rounds {min(lane[f'ratio_opa_cpu_vs_{base}']):.3f}-"
            f"{max(lane[f'ratio_opa_cpu_vs_{base}']):.3f}), "
            f"p50 ratio {lane['median_ratio_p50']:.3f}, OPA peak RSS {lane['opa_peak_rss_mib']} MiB"
            + front
        )
    if args.json:
        args.json.write_text(json.dumps({"args": sys.argv[1:], **res}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
