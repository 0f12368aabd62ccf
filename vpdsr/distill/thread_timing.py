"""Seconds per distillation step with each thread count, side by side (`python -m vpdsr.distill.thread_timing`).

A tool apart from `threads.py` (the probe the trainer runs at start), because it drives the trainer itself.
"""
from __future__ import annotations

import torch


def measure(config, steps: int = 20, student_steps: int = 8, rounds: int = 2, teacher="tiny-teacher",
            counts: tuple[int, ...] = (1, 2)) -> list[dict]:
    """Seconds per step of the teacher and the student stage with each thread count, side by side.

    Counts alternate within each round (a change of machine load hits all of them), the loop's own
    clock is read from log.csv (set-up and evaluation excluded), and each count's weights are
    compared bit for bit with the first count's.

    Example:
        python -m vpdsr.distill.thread_timing configs/tiny.yaml --steps 20 --student-steps 8
    """
    import csv
    import tempfile
    from pathlib import Path

    from safetensors.torch import load_file

    from vpdsr.distill.config import load_config
    from vpdsr.distill.trainer import train_student, train_teacher

    rows: dict[int, dict] = {n: {"threads": n, "teacher_s_all": [], "student_s_all": []} for n in counts}
    first: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for n in counts:
                cfg = load_config(config)
                cfg.accelerate.num_threads = n
                cfg.eval.enabled = False
                cfg.teacher.log_every = cfg.student.log_every = 1
                stages = (("teacher", steps, lambda c, o: train_teacher(c, o, progress=False, stop_at=steps)),
                          ("student", student_steps,
                           lambda c, o: train_student(c, teacher, o, progress=False, stop_at=student_steps)))
                for stage, k, run in stages:
                    if not k:
                        continue
                    out = Path(tmp) / f"{stage}-{r}-{n}"
                    run(cfg, out)
                    log = list(csv.DictReader((out / "log.csv").open()))
                    rows[n][f"{stage}_s_all"].append(float(log[-1]["seconds"]) / k)
                    weights = load_file(str(out / "checkpoint" / "modules.safetensors"))
                    ref = first.setdefault(stage, weights)
                    same = all(torch.equal(ref[key], weights[key]) for key in ref)
                    rows[n][f"{stage}_identical"] = rows[n].get(f"{stage}_identical", True) and same
    for row in rows.values():
        for stage in ("teacher", "student"):
            times = row[f"{stage}_s_all"]
            row[f"{stage}_s_per_step"] = min(times) if times else None
    return list(rows.values())


def _main(argv=None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(description="steps/s of distillation with 1 and 2 threads, side by side")
    p.add_argument("config")
    p.add_argument("--steps", type=int, default=20, help="teacher steps per count and round")
    p.add_argument("--student-steps", type=int, default=8, help="student steps per count and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--teacher", default="tiny-teacher", help="the student stage's teacher")
    args = p.parse_args(argv)
    rows = measure(args.config, args.steps, args.student_steps, args.rounds, args.teacher)
    print("| threads | teacher s/step (steps/s) | student s/step (steps/s) | weights as with the first count |")
    print("|---|---|---|---|")
    for r in rows:
        cells = []
        for stage in ("teacher", "student"):
            s = r[f"{stage}_s_per_step"]
            cells.append(f"{s:.3f} ({1 / s:.2f})" if s else "")
        same = all(r.get(f"{st}_identical", True) for st in ("teacher", "student"))
        print(f"| {r['threads']} | {cells[0]} | {cells[1]} | {'identical' if same else 'DIFFERENT'} |")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
