"""Generate the bundled demo call (demo/demo-call.flac) with espeak-ng.

A short invented NKS call, stereo 8 kHz like a phone system stores it:
left = counsellor, right = caller, with a faint echo of each party on the
other channel and a little line noise. Needs `espeak-ng` (Debian package);
the generated file is committed, so users never need to run this.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 8000
TURNS = [  # (speaker, text, pause before in seconds)
    ("counsellor", "Velkommen til NAV, du snakker med Kari.", 0.3),
    ("caller", "Hei, jeg heter Ola. Jeg lurer på når sykepengene mine kommer.", 0.4),
    ("counsellor", "Ja.", 0.1),
    ("caller", "Jeg har ikke fått noe denne måneden, og jeg er ganske bekymret.", 0.2),
    ("counsellor", "Uff da, det skjønner jeg. Bra at du ringer.", 0.4),
    ("counsellor", "Har du sendt inn søknaden om sykepenger?", 0.3),
    ("caller", "Ja, det gjorde jeg for to uker siden.", 0.3),
    ("counsellor", "Mm.", 0.1),
    ("counsellor", "Behandlingstiden er fire uker, så den er fortsatt under behandling.", 0.5),
    ("counsellor", "Er det noe mer du lurer på?", 0.4),
    ("caller", "Nei, det var alt. Tusen takk.", 0.3),
    ("counsellor", "Ha en fin dag.", 0.3),
]
VOICES = {"counsellor": ("nb+f3", 165), "caller": ("nb+m3", 150)}


def speak(text: str, voice: str, speed: int) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", f.name, text], check=True)
        x, sr = sf.read(f.name, dtype="float32")
    return soxr.resample(x, sr, SR).astype(np.float32)


def main(out: Path) -> None:
    rng = np.random.default_rng(0)
    chans = {"counsellor": [], "caller": []}
    for who, text, pause in TURNS:
        x = speak(text, *VOICES[who]) * 0.5
        for k in chans:
            chans[k].append(np.zeros(int(pause * SR), np.float32))
            chans[k].append(x if k == who else 0.02 * x)  # faint echo on the other line
    left, right = (np.concatenate(chans[k]) for k in ("counsellor", "caller"))
    stereo = np.stack([left, right], axis=1)
    stereo += rng.normal(0, 0.0002, stereo.shape).astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, np.clip(stereo, -1, 1), SR, subtype="PCM_16")
    print(f"wrote {out} ({len(left) / SR:.1f} s)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo/demo-call.flac"))
