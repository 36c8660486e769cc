#!/usr/bin/env python3
"""PESQ (ITU-T P.862) of the files `benches/opus_settings.rs` and
`benches/mp3_settings.rs` write.

    OPUS_SETTINGS_WAV_DIR=/tmp/opus cargo bench --bench opus_settings
    MP3_SETTINGS_WAV_DIR=/tmp/mp3 cargo bench --bench mp3_settings
    python3 -m venv /tmp/pesq && /tmp/pesq/bin/pip install numpy scipy pesq
    /tmp/pesq/bin/python benches/pesq_score.py /tmp/opus

Scores every `<rate>-<kbps>k-c<complexity>.wav` (Opus) or
`<rate>-<kbps>k-q<quality>.wav` (MP3) against `ref-<rate>.wav`:
narrowband P.862 at 8 kHz, wideband P.862.2 at 16 kHz, and at 48 kHz
P.862.2 on both decimated to 16 kHz (MOS-LQO, 1-4.5; the narrowband and
wideband scales are not comparable with each other). A measurement aid for
PERFORMANCE.md, not part of the tests.
"""

import pathlib
import re
import sys
import wave

import numpy as np
from pesq import pesq
from scipy.signal import resample_poly


def read(path):
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return rate, samples.astype(np.float32)


def main():
    directory = pathlib.Path(sys.argv[1])
    refs = {}
    print("| rate | kbit/s | complexity or quality | PESQ MOS-LQO |")
    print("|---|---|---|---|")
    name = re.compile(r"(\d+)-(\d+)k-[cq](\d+)\.wav")
    found = [(m.groups(), p) for p in directory.glob("*.wav") if (m := name.fullmatch(p.name))]
    found.sort(key=lambda f: tuple(int(n) for n in f[0]))
    for (rate, kbps, complexity), path in found:
        if rate not in refs:
            refs[rate] = read(directory / f"ref-{rate}.wav")[1]
        ref = refs[rate]
        _, degraded = read(path)
        n = min(len(ref), len(degraded))
        mode = "nb" if rate == "8000" else "wb"
        pesq_rate = int(rate)
        ref_n, degraded_n = ref[:n], degraded[:n]
        if pesq_rate > 16000:
            # P.862.2 stops at 16 kHz: score what a wideband listener hears.
            step = pesq_rate // 16000
            ref_n = resample_poly(ref_n, 1, step)
            degraded_n = resample_poly(degraded_n, 1, step)
            pesq_rate = 16000
        score = pesq(pesq_rate, ref_n, degraded_n, mode)
        print(f"| {rate} | {kbps} | {complexity} | {score:.2f} |")


if __name__ == "__main__":
    main()
