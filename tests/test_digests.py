import base64
import hashlib

import pytest

from wbsync.core.digests import CHUNK_SIZE, b64, hash_bytes, hash_file, hex_of, new_hasher

# md5 vectors: RFC 1321; xxh3-128 vectors: xxHash's reference implementation.
MD5_HELLO = "XUFAKrxLKna5cZ2REBfFkg=="
MD5_EMPTY = "1B2M2Y8AsgTpgAmY7PhCfg=="
XXH128_EMPTY_HEX = "99aa06d3014798d86001c324468d497f"
XXH128_HELLO_HEX = "b5e9c1ad071b3e7fc779cfaa5e523818"


def b64_of_hex(hexdigest: str) -> str:
    return base64.b64encode(bytes.fromhex(hexdigest)).decode()


def test_md5_of_hello_is_wandbs_base64_digest():
    assert hash_bytes(b"hello", "md5") == MD5_HELLO
    assert hash_bytes(b"", "md5") == MD5_EMPTY


def test_xxh128_digests_are_base64_of_the_raw_xxh3_128_digest():
    assert hash_bytes(b"", "xxh128") == b64_of_hex(XXH128_EMPTY_HEX)
    assert hash_bytes(b"hello", "xxh128") == b64_of_hex(XXH128_HELLO_HEX)


def test_hashing_in_pieces_equals_hashing_at_once():
    hasher = new_hasher("xxh128")
    for piece in (b"he", b"l", b"lo"):
        hasher.update(piece)
    assert b64(hasher) == b64_of_hex(XXH128_HELLO_HEX)


@pytest.mark.parametrize("algorithm", ["md5", "xxh128"])
def test_hash_file_streams_files_larger_than_one_chunk(tmp_path, algorithm):
    data = bytes(range(256)) * (CHUNK_SIZE // 256 * 2 + 7)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert hash_file(path, algorithm) == hash_bytes(data, algorithm)


def test_hash_file_of_an_empty_file_is_the_empty_digest(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    assert hash_file(tmp_path / "empty", "md5") == MD5_EMPTY


def test_hex_of_decodes_a_base64_digest():
    assert hex_of(MD5_HELLO) == hashlib.md5(b"hello").hexdigest()


@pytest.mark.parametrize("bad", ["", "not base64!", "../../etc/passwd", "AAAA", MD5_HELLO + "AAAA"])
def test_hex_of_refuses_malformed_digests(bad):
    with pytest.raises(ValueError):
        hex_of(bad)


def test_unknown_algorithms_are_refused():
    with pytest.raises(ValueError, match="sha1"):
        new_hasher("sha1")  # type: ignore[arg-type]
