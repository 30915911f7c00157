"""The upload page's incremental SHA-256 (static/js/sha256.js) in a real browser, against FIPS 180-4 test vectors and hashlib."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Messages and digests from the NIST examples for SHA-256 (FIPS 180-4).
TEST_VECTORS = [
    (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    (
        b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
    ),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
]

# Lengths around the padding boundaries: 55 bytes leave room for the length in
# the last block, 56 do not, 64 is one whole block, 1 MiB + 3 ends mid-block.
AWKWARD_LENGTHS = [0, 1, 55, 56, 63, 64, 65, 119, 120, 1024**2 + 3]

# Hash `base64` in one update, then again in parts of the sizes in `pieces`
# (repeated), so partial blocks carry over between updates.
HASH_IN_BROWSER = """([encoded, pieces]) => {
  const binary = atob(encoded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) { bytes[i] = binary.charCodeAt(i); }
  const whole = new Sha256().update(bytes.buffer).hexDigest();
  const hash = new Sha256();
  let offset = 0;
  for (let i = 0; offset < bytes.length; i += 1) {
    const size = pieces[i % pieces.length];
    hash.update(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return [whole, hash.hexDigest()];
}"""


@pytest.fixture
def sha256_page(page):
    page.goto("/")
    page.add_script_tag(url="/static/js/sha256.js")
    return page


def hash_in_browser(page, data: bytes, pieces: list[int]) -> tuple[str, str]:
    whole, in_parts = page.evaluate(HASH_IN_BROWSER, [base64.b64encode(data).decode("ascii"), pieces])
    return whole, in_parts


@pytest.mark.parametrize("message, expected", TEST_VECTORS, ids=["empty", "abc", "448-bit", "896-bit", "million-a"])
def test_sha256_test_vectors(sha256_page, message, expected):
    whole, in_parts = hash_in_browser(sha256_page, message, [1, 63, 64, 65, 7])

    assert whole == expected
    assert in_parts == expected


@pytest.mark.parametrize("length", AWKWARD_LENGTHS)
def test_sha256_matches_hashlib(sha256_page, length):
    data = random.Random(length).randbytes(length)
    whole, in_parts = hash_in_browser(sha256_page, data, [3, 64, 1, 1000, 129, 56])

    assert whole == hashlib.sha256(data).hexdigest()
    assert in_parts == hashlib.sha256(data).hexdigest()


def test_sha256_rejects_use_after_digest(sha256_page):
    message = sha256_page.evaluate("""() => {
      const hash = new Sha256();
      hash.hexDigest();
      try { hash.update(new Uint8Array(1)); } catch (error) { return error.message; }
      return "no error";
    }""")

    assert "after hexDigest()" in message


# Hash the first `cut` bytes, store the midstate as JSON, and finish the message
# from that state in a new Sha256, as the upload page does across a reload.
RESUME_IN_BROWSER = """([encoded, cut]) => {
  const binary = atob(encoded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) { bytes[i] = binary.charCodeAt(i); }
  const stored = JSON.stringify(new Sha256().update(bytes.subarray(0, cut)).midstate());
  const midstate = JSON.parse(stored);
  return [midstate.length, Sha256.fromMidstate(midstate).update(bytes.subarray(midstate.length)).hexDigest()];
}"""


@pytest.mark.parametrize("cut", [0, 1, 63, 64, 65, 1000, 4096])
def test_sha256_resumes_from_midstate(sha256_page, cut):
    data = random.Random(cut).randbytes(5000)
    length, digest = sha256_page.evaluate(RESUME_IN_BROWSER, [base64.b64encode(data).decode("ascii"), cut])

    assert length == cut - cut % 64
    assert digest == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("midstate, field", [
    ({"words": [0] * 7, "length": 64}, "words"),
    ({"words": [0] * 7 + [2**31], "length": 64}, "words"),
    ({"words": [0] * 7 + ["1"], "length": 64}, "words"),
    ({"words": [0] * 8, "length": 65}, "length"),
    ({"words": [0] * 8, "length": -64}, "length"),
    ({"words": [0] * 8}, "length"),
])
def test_sha256_rejects_invalid_midstate(sha256_page, midstate, field):
    message = sha256_page.evaluate("""(midstate) => {
      try { Sha256.fromMidstate(midstate); } catch (error) { return error.name + ": " + error.message; }
      return "no error";
    }""", midstate)

    assert message.startswith(f"TypeError: Sha256.fromMidstate() needs `{field}`")


def test_sha256_hashes_blob_from_midstate(sha256_page):
    """hashBlob() in parts that are not whole blocks, continued from the midstate of its own first parts."""
    data = random.Random(3).randbytes(10_000)
    digest, progress = sha256_page.evaluate("""async (encoded) => {
      const binary = atob(encoded);
      const bytes = new Uint8Array(binary.length);
      for (let i = 0; i < binary.length; i += 1) { bytes[i] = binary.charCodeAt(i); }
      const blob = new Blob([bytes]);
      const controller = new AbortController();
      let midstate = null;
      const progress = [];
      try {
        await Sha256.hashBlob(blob, {partBytes: 1000, signal: controller.signal, onProgress: (hashed, state) => {
          progress.push(hashed);
          midstate = state;
          if (hashed >= 3000) { controller.abort(); }
        }});
      } catch (error) { progress.push(error.name); }
      const digest = await Sha256.hashBlob(blob, {partBytes: 1000, midstate: midstate, onProgress: (hashed) => progress.push(hashed)});
      return [digest, progress];
    }""", base64.b64encode(data).decode("ascii"))

    assert progress[:5] == [0, 1000, 2000, 3000, "AbortError"]
    assert progress[5:] == [2944, 3944, 4944, 5944, 6944, 7944, 8944, 9944, 10_000]
    assert digest == hashlib.sha256(data).hexdigest()
