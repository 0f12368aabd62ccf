"""`vpdsr info`: versions, importable backends, CPU features, GPUs; `--peak`: this machine's matmul peaks."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="versions, importable backends, CPU features and GPUs")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--peak", action="store_true",
                   help="measure (or read the cached) fp32/bf16/fp16/int8 matmul peaks per engine: the roofline of "
                        "every benchmark report (a few seconds; cached per CPU, flags, threads and versions)")
    p.add_argument("--threads", type=int, help="threads for --peak (default: torch's current count)")
    p.add_argument("--refresh", action="store_true", help="with --peak: measure again, replacing the cache")
    p.set_defaults(func=run)


def collect() -> dict:
    """What is installed and usable here (importing each optional backend, catching failures)."""
    from vpdsr import env

    return {**env.machine(), "backends": env.importable(), "onnxruntime_providers": env.onnxruntime_providers(),
            "openvino_devices": env.openvino_devices()}


def run(args) -> int:
    info = collect()
    if args.peak:
        from vpdsr.bench.peak import machine_peaks

        info["peak"] = machine_peaks(args.threads, refresh=args.refresh)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"vpdsr {info['vpdsr']}  python {info['python']}  {info['platform']}")
    cpu = info["cpu"]
    print(f"cpu: {cpu['name']} ({cpu['cores']} cores) features: {' '.join(cpu['features']) or '-'}")
    gpus = info["gpus"]
    print("gpus: " + (", ".join(f"{g['name']} (sm {g['capability']}, {g['memory_gb']} GB)" for g in gpus) or "none"))
    for name, b in info["backends"].items():
        state = b["version"] if b["importable"] else f"not importable ({b['reason']})"
        print(f"  {name:<12} {state}")
    if info["onnxruntime_providers"]:
        print("onnxruntime providers: " + ", ".join(info["onnxruntime_providers"]))
    if info["openvino_devices"]:
        print("openvino devices: " + ", ".join(info["openvino_devices"]))
    if "peak" in info:
        print_peaks(info["peak"])
    return 0


def print_peaks(peaks: dict) -> None:
    from vpdsr.bench.roofline import peak_line

    where = f"cached in {peaks['cached']}" if peaks.get("cached") else f"measured now in {peaks['seconds']} s"
    print(f"peak ({where}):")
    for f in peaks["figures"]:
        unit = "GOP/s" if f["precision"] == "int8" else "GFLOP/s"
        rate = "-" if f["gflops"] is None else f"{f['gflops']:8.1f} {unit}"
        print(f"  {f['precision']:<5} {f['engine']:<12} {f['op']:<20} {rate:>16}  {f['note'] or ''}")
    print(peak_line(peaks))
