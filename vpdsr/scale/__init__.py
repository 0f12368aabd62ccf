"""Scale out: `vpdsr upscale` over many images (one process, or Ray workers), resumable through a run
manifest, and images of any size with bounded memory.

- :mod:`vpdsr.scale.manifest`: `upscale.json`, what a run folder holds and what a rerun may skip;
- :mod:`vpdsr.scale.worker`: one runner and the per-image work (read, upscale, write atomically);
- :mod:`vpdsr.scale.job`: the plan (inputs, hashes, seeds, outputs) and the loop both engines share;
- :mod:`vpdsr.scale.ray_engine`: the same workers as Ray actors (imported only for `--engine ray`);
- :mod:`vpdsr.scale.memory` and :mod:`vpdsr.scale.tiff_rows`: outputs larger than `--max-memory`,
  streamed row band by row band into a tiled TIFF.
"""
