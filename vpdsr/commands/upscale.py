"""`vpdsr upscale INPUT... --out DIR [--engine local|ray]`: tiled super-resolution (the model's scale).

Each result is `OUT/<stem>_x<scale>.png`, or `OUT/<stem>_x<scale>.tif` for an output larger than
`--max-memory` (streamed row band by row band into a tiled TIFF: the same pixels). `OUT/upscale.json`
records every input (sha256), output (sha256), the model or artifact, the settings and each image's
seconds, so the same command run again skips what is done and makes what is missing or stale.

Exit codes: 0 every image made; 1 some images failed (corrupt or unreadable: listed under `failures` in
upscale.json, the rest are made) or the job stopped (the last line says how to resume); 2 bad settings,
before any image is made. Checked first: `--out` is a folder (or can be made), no two inputs share a file
stem, the model or artifact loads.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from vpdsr.commands.bench import int_or_auto
from vpdsr.errors import ConfigError, InputError

log = logging.getLogger("vpdsr.upscale")
LOG_NAME = "upscale.log"


def register(sub) -> None:
    p = sub.add_parser("upscale", help="super-resolve images with a model or artifact (tiled, any size, resumable)")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--model", default="tiny", help="model directory or preset name (default: tiny)")
    p.add_argument("--out", required=True, help="output folder; each result is <name>_x<scale>.png (e.g. _x4), "
                                                "plus upscale.json (the run manifest) and upscale.log")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "openvino", "tensorrt"),
                   help="runner: torch without --artifact (default), else the artifact's own backend by default")
    p.add_argument("--artifact",
                   help="exported artifact folder (or export folder + --target) to run instead of --model")
    p.add_argument("--target", help="artifact name inside an export folder given as --artifact (e.g. openvino-int8)")
    p.add_argument("--device", help="cpu (default) or cuda[:N]; openvino: its device name (CPU, GPU)")
    p.add_argument("--precision", help="torch: fp32 (default), fp16, bf16; openvino: override the artifact's "
                                       "pinned execution precision (f32, bf16, f16)")
    p.add_argument("--tile", type=int_or_auto, help="tile size in LR pixels; 0 = whole image; auto (the default): "
                                                  "the whole image where a dynamic engine allows it (up to 256x256), "
                                                  "else the fewest tiles (a static artifact's own size); chosen "
                                                  "without timing, so every worker cuts an image the same way")
    p.add_argument("--overlap", type=int, default=16, help="tile overlap in LR pixels (default 16)")
    p.add_argument("--batch", type=int, default=4, help="tiles per inference call (default 4)")
    p.add_argument("--seed", type=int, default=0, help="noise seed; each image's own seed is derived from it and "
                                                       "the image file's sha256 (default 0)")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="output bit depth (default 8)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (default): this process, one image after another; ray: Ray workers, one runner each")
    p.add_argument("--address", help="ray: join this running Ray cluster (e.g. 10.0.0.1:6379, or auto) instead of "
                                     "starting a local Ray for the job")
    p.add_argument("--workers", type=int, help="ray: workers (one runner each; default: the CPUs / --threads)")
    p.add_argument("--threads", type=int, help="threads per worker (default: local: all cores; ray: the CPUs / "
                                               "--workers on a local Ray, 1 on a cluster). torch outputs depend on "
                                               "it: pin it for the same bytes across engines")
    p.add_argument("--max-memory", help="memory one image may take in memory, e.g. 4G (default: half the RAM "
                                        "available at start, split between this machine's workers); a larger "
                                        "output is streamed into a tiled .tif")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run, log_file=lambda a: (Path(a.out) / LOG_NAME, False))


def _check(args) -> None:
    """Bad settings fail here, before anything runs (exit 2)."""
    if args.engine != "ray" and (args.address or args.workers):
        flag = "--address" if args.address else "--workers"
        raise ConfigError(f"`{flag}` is for `--engine ray`")
    for flag, value in (("--workers", args.workers), ("--threads", args.threads), ("--batch", args.batch)):
        if value is not None and value < 1:
            raise ConfigError(f"`{flag}` must be at least 1, got {value}")
    if args.overlap < 0:
        raise ConfigError(f"`--overlap` must be >= 0, got {args.overlap}")
    parent = Path(args.out).absolute().parent
    if not Path(args.out).exists() and not parent.exists():
        raise InputError(f"`--out {args.out}`: its parent folder {parent} does not exist; create it first")


def _engine_shape(args) -> tuple[int, int | None]:
    """(workers, threads per worker) of the chosen engine."""
    from vpdsr.env import available_cpus

    cpus = available_cpus()
    if args.engine == "local":
        return 1, args.threads
    if args.address:  # a cluster: its nodes' CPUs are not known here
        threads = args.threads or 1
        return args.workers or 1, threads
    threads = args.threads or max(1, cpus // (args.workers or cpus))
    return args.workers or max(1, cpus // threads), threads


def run(args) -> int:
    from vpdsr.commands.checks import distinct_outputs, output_folder
    from vpdsr.data.io import list_images
    from vpdsr.scale.job import LocalEngine, make_plan, run_job
    from vpdsr.scale.manifest import NAME, RunManifest
    from vpdsr.scale.memory import default_budget, human, parse_size
    from vpdsr.scale.worker import RunnerSpec, Settings

    _check(args)
    out = output_folder(args.out)
    files = list(dict.fromkeys(f.resolve() for spec in args.images for f in list_images(spec)))  # named twice: once
    # two inputs with one stem are refused before the model loads (the scale only names the output)
    distinct_outputs((f, out / f"{f.stem}_x<scale>.png") for f in files)
    workers, threads = _engine_shape(args)
    settings = Settings(tile=args.tile if args.tile is not None else "auto", overlap=args.overlap, batch=args.batch,
                        seed=args.seed, bit_depth=args.bit_depth)
    settings.tiles()  # a bad overlap/tile combination is a one-line ConfigError now
    spec = RunnerSpec(model=args.model, artifact=args.artifact, target=args.target, backend=args.backend,
                      device=args.device, precision=args.precision, threads=threads)
    runner = spec.build()  # inactive: an unknown model or a changed artifact fails here, in one line
    scale = int(getattr(runner, "scale", 4))
    identity = spec.identity(runner)
    del runner
    budget = parse_size(args.max_memory) if args.max_memory else default_budget(1 if args.address else workers)
    saved = {**settings.to_dict(), "scale": scale, "device": args.device, "precision": args.precision}
    key = _key(identity, saved)
    manifest = RunManifest.load_or_new(out, key, identity, saved)
    plan = make_plan(files, out, scale, settings, budget, manifest)
    streamed = sum(t.stream for t in plan.todo)
    announce = (f"upscale: {len(files)} image(s): {len(plan.todo)} to make"
                + (f" ({plan.stale} stale)" if plan.stale else "") + f", {len(plan.skipped)} already done"
                + (f", {streamed} streamed (over --max-memory {human(budget)})" if streamed else "")
                + (f", {len(plan.failed)} unreadable" if plan.failed else ""))
    if args.engine == "ray":
        from vpdsr.scale.ray_engine import RayEngine

        engine = RayEngine(spec, settings, workers, args.address, threads)
    else:
        engine = LocalEngine(spec, settings)
    manifest.data["max_memory"] = budget
    t0 = time.perf_counter()
    try:
        # announced once the workers have started: a setting they refuse (e.g. `--tile` against a static
        # artifact) stays the only line
        result = run_job(engine, plan, manifest, progress=not args.no_progress and len(plan.todo) > 1,
                         on_start=lambda: log.info(announce))
    except KeyboardInterrupt:
        _resume_line(manifest, out, len(files), "interrupted")
        raise
    except Exception as e:
        from vpdsr.errors import VpdsrError
        from vpdsr.scale.job import JobStopped

        if isinstance(e, VpdsrError) and not manifest.images:
            raise  # a bad setting the workers found (e.g. --tile against a static artifact): exit 2, one line
        if isinstance(e, (JobStopped, VpdsrError)):
            _resume_line(manifest, out, len(files), " ".join(str(e).split()))
            return 1
        raise
    failed = len(manifest.failures)
    rate = result.get("images_per_s")
    where = ""
    if args.engine == "ray":
        nodes = len(result.get("nodes") or {}) or result.get("cluster", {}).get("nodes", 0)
        where = f" on {workers} Ray worker(s), {nodes} node(s), Ray start {result.get('start_s', 0):.1f} s"
    summary = (f"upscale: {result['done']} made, {len(plan.skipped)} already done, {failed} failed of {len(files)} "
               f"in {time.perf_counter() - t0:.1f} s" + (f" ({rate:.2f} images/s)" if rate else "") + where
               + f"; {out / NAME}")
    print(summary)
    if failed:
        first = manifest.failures[0]
        print(f"upscale: {failed} image(s) failed, e.g. {first['reason']} (all under `failures` "
              f"in {out / NAME}; run the same command again to retry them)")
        return 1
    return 0


def _key(identity: dict, settings: dict) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps({"model": identity, "settings": settings}, sort_keys=True).encode()).hexdigest()


def _resume_line(manifest, out: Path, total: int, why: str) -> None:
    import sys

    done = sum(1 for r in manifest.images if r.get("status") == "done")
    print(f"vpdsr upscale: stopped ({why}) with {done} of {total} images made; run the same command again to "
          f"resume ({out / 'upscale.json'} records what is done)", file=sys.stderr)
