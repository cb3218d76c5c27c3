"""Coverage-guided fuzzing of snnmap's readers with atheris, for campaigns run by hand.

    pip install atheris
    python tests/fuzz/fuzz_readers.py image -atheris_runs=200000
    python tests/fuzz/fuzz_readers.py {image,model,npz,inputs,chip,arrays} [libFuzzer flags]

Any exception other than SnnmapError is a finding: libFuzzer stops and writes the input to crash-*.
(pytest runs the bounded hypothesis campaign in tests/test_fuzz_readers.py instead.)
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    from snnmap.chip.spec import load_chip
    from snnmap.errors import SnnmapError
    from snnmap.image import parse_image
    from snnmap.io.arrays import unpack_arrays
    from snnmap.io.inputs import load_inputs
    from snnmap.io.safe_npz import load_npz_safely
    from snnmap.modelfile import load_model

_TMP = tempfile.mkdtemp(prefix="snnmap-fuzz-")


def _via_file(suffix: str, data: bytes, reader) -> None:
    path = os.path.join(_TMP, "input" + suffix)
    with open(path, "wb") as f:
        f.write(data)
    reader(path)


READERS = {
    "image": lambda d: parse_image(d, "fuzz"),
    "arrays": lambda d: unpack_arrays(d, "fuzz"),
    "model": lambda d: _via_file(".snnm", d, load_model),
    "npz": lambda d: _via_file(".npz", d, load_npz_safely),
    "inputs": lambda d: _via_file(".npz", d, lambda p: load_inputs(p, (28, 28, 1))),
    "chip": lambda d: _via_file(".toml", d, load_chip),
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in READERS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(READERS)}}} [libFuzzer flags]")
    reader = READERS[sys.argv.pop(1)]

    def one(data: bytes) -> None:
        try:
            reader(data)
        except SnnmapError as e:
            assert "\n" not in str(e)

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
