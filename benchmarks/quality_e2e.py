"""End-to-end quality on the shared dev audio, scored from the output files a user gets.

Runs ``speechpipe batch`` on three sets (the mono sim calls with the real recordings, the
stereo sim calls) and scores what it wrote with the project's own evaluators:
``speechpipe eval diarization --from-output`` (exported RTTM), ``speechpipe eval prosody``
(backchannels with the right intonation, breaths) and
``python -m speechpipe.evaluation.interaction`` (latency, talk share vs reference turns).
Nothing here is an oracle: no reference boundary reaches the pipeline.

``python -m benchmarks.quality_e2e OUT_DIR [--shared ../shared] [--only mono|stereo] [-- BATCH OPTIONS...]``

Options after ``--`` go to every ``speechpipe batch`` call (e.g. ``--diarizer embedded``).
The README's "as shipped" rows come from this script.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def _sets(shared: Path) -> dict[str, tuple[list[Path], list[Path], list[Path]]]:
    """name -> (inputs, RTTM references, ``*.ref.json`` references (none for the real recordings))."""
    sim = shared / "audio" / "sim-calls"
    real = [shared / "audio" / "real" / "dev00.wav", shared / "audio" / "real" / "sample.wav",
            shared / "audio" / "realconv" / "rcdev-01.wav", shared / "audio" / "realconv" / "rcdev-01.tel.wav"]
    real = [p for p in real if p.is_file()]
    mono = sorted(sim.glob("*.mono.wav"))
    stereo = sorted(sim.glob("*.stereo.flac"))
    def ref(ps: list[Path], suffix: str) -> list[Path]:
        return [p.with_name(p.name.split(".")[0] + suffix) for p in ps]

    return {
        "mono": (mono, ref(mono, ".rttm"), ref(mono, ".ref.json")),
        "real": (real, ref(real, ".rttm"), []),
        "stereo": (stereo, ref(stereo, ".rttm"), ref(stereo, ".ref.json")),
    }


def _run(cmd: list[str], log) -> int:
    print("$", " ".join(cmd), flush=True)
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps tables to 80 columns when not on a terminal
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    log.write(f"$ {' '.join(cmd)}\n{p.stdout}\n")
    print(p.stdout[-6000:], flush=True)
    return p.returncode


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("SPEECHPIPE_SHARED", "../shared")))
    ap.add_argument("--only", choices=["mono", "real", "stereo"], action="append")
    args = ap.parse_args(argv)
    py = [sys.executable, "-m", "speechpipe"]
    args.out.mkdir(parents=True, exist_ok=True)
    rc = 0
    with open(args.out / "quality_e2e.log", "a", encoding="utf-8") as log:
        for name, (inputs, refs, ref_json) in _sets(args.shared).items():
            if args.only and name not in args.only or not inputs:
                continue
            out = args.out / name
            listing = args.out / f"{name}.txt"
            listing.write_text("".join(f"{p.resolve()}\n" for p in inputs), encoding="utf-8")
            t = time.perf_counter()
            rc |= _run([*py, "batch", str(listing), "--out", str(out), "--resume", "--formats", "json,rttm", *extra],
                       log)
            print(f"[{name}] batch {time.perf_counter() - t:.0f} s wall", flush=True)
            rttm_refs = [a for r in refs for a in ("--ref", str(r))]
            rc |= _run([*py, "eval", "diarization", "--from-output", str(out), *rttm_refs], log)
            if ref_json:
                json_refs = [a for r in ref_json for a in ("--ref", str(r))]
                rc |= _run([*py, "eval", "prosody", str(out), *json_refs], log)
                interaction = [sys.executable, "-m", "speechpipe.evaluation.interaction"]
                rc |= _run([*interaction, str(out), str(ref_json[0].parent)], log)
    return 1 if rc else 0


if __name__ == "__main__":
    raise SystemExit(main())
