"""`vpdsr info`: versions, importable backends, CPU features, GPUs."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("info", help="versions, importable backends, CPU features and GPUs")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def collect() -> dict:
    """What is installed and usable here (importing each optional backend, catching failures)."""
    from vpdsr import env

    return {**env.machine(), "backends": env.importable(), "onnxruntime_providers": env.onnxruntime_providers(),
            "openvino_devices": env.openvino_devices()}


def run(args) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"vpdsr {info['vpdsr']}  python {info['python']}  {info['platform']}")
    print(f"cpu: {info['cpu']['name']} ({info['cpu']['cores']} cores) features: {' '.join(info['cpu']['features']) or '-'}")
    gpus = info["gpus"]
    print("gpus: " + (", ".join(f"{g['name']} (sm {g['capability']}, {g['memory_gb']} GB)" for g in gpus) or "none"))
    for name, b in info["backends"].items():
        state = b["version"] if b["importable"] else f"not importable ({b['reason']})"
        print(f"  {name:<12} {state}")
    if info["onnxruntime_providers"]:
        print("onnxruntime providers: " + ", ".join(info["onnxruntime_providers"]))
    if info["openvino_devices"]:
        print("openvino devices: " + ", ".join(info["openvino_devices"]))
    return 0
