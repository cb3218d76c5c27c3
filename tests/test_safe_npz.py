"""The TensorLayer reader never runs pickle: only numpy array reconstruction is admitted."""

import io
import pickle
import zipfile

import numpy as np
import pytest

from snnmap.errors import SnnmapError
from snnmap.io.safe_npz import load_npz_safely


def _npz_with_pickle(path, payload: bytes, shape=(1,)):
    header = {"descr": "|O", "fortran_order": False, "shape": shape}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("params.npy", buf.getvalue() + payload)


def test_reads_a_real_object_array(tmp_path):
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([-1, 0, 1], dtype=np.float32),
              np.ones((2, 2, 1, 3), dtype=np.float64)]
    obj = np.empty(len(arrays), dtype=object)
    obj[:] = arrays
    np.savez(tmp_path / "p.npz", params=obj)
    got = load_npz_safely(tmp_path / "p.npz")["params"]
    assert len(got) == 3
    for a, b in zip(arrays, got):
        assert a.dtype == b.dtype and np.array_equal(a, b)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_is_refused_before_anything_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    _npz_with_pickle(tmp_path / "evil.npz", pickle.dumps([_Evil(marker)], protocol=protocol))
    with pytest.raises(SnnmapError, match="refused"):
        load_npz_safely(tmp_path / "evil.npz")
    assert not marker.exists()


def test_numpy_global_with_evil_arguments_is_refused(tmp_path):
    # a pickle that names only allowed globals but calls them in a way numpy never does
    payload = (b"\x80\x02cnumpy\ndtype\nq\x00X\x01\x00\x00\x00Vq\x01\x89\x88\x87q\x02Rq\x03.")
    _npz_with_pickle(tmp_path / "odd.npz", payload)
    with pytest.raises(SnnmapError):
        load_npz_safely(tmp_path / "odd.npz")


@pytest.mark.parametrize("blob", [b"", b"\x80\x02", b"garbage", b"\x80\x02]q\x00(K\x01e."])
def test_garbage_streams_give_one_error(tmp_path, blob):
    _npz_with_pickle(tmp_path / "g.npz", blob)
    with pytest.raises(SnnmapError):
        load_npz_safely(tmp_path / "g.npz")


def test_not_a_zip(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"hello")
    with pytest.raises(SnnmapError, match="zip"):
        load_npz_safely(tmp_path / "x.npz")


def test_a_member_stored_twice_is_refused(tmp_path):
    """A zip with two x.npy members (benign images first, others second) was read silently, the
    second winning, while np.load and zip tools may show the first: an ambiguous input is refused."""
    import warnings

    def npy(a):
        b = io.BytesIO()
        np.save(b, a)
        return b.getvalue()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
        with zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
            z.writestr("x.npy", npy(np.zeros((2, 8, 8), np.uint8)))
            z.writestr("x.npy", npy(np.full((2, 8, 8), 255, np.uint8)))
    with pytest.raises(SnnmapError, match=r"d.npz\[x.npy\]: member appears twice"):
        load_npz_safely(tmp_path / "d.npz")
