// Incremental SHA-256 (FIPS 180-4) for the upload page. Web Crypto's digest()
// takes the whole message in one buffer, so a large file would have to be in
// memory at once. This hash takes the message part by part and keeps only the
// 32-byte state and one partial 64-byte block between calls.
//
//   var hash = new Sha256();
//   hash.update(uint8Array);  // any number of times, parts of any length
//   hash.hexDigest();         // 64 lowercase hexadecimal characters; ends the hash
//
// hash.midstate() returns the state after the last whole 64-byte block, and
// Sha256.fromMidstate(midstate) continues a hash from it, so the upload page
// can store the state and resume hashing after a reload. The script runs in a
// page (global `window`) and in a Web Worker (global `self`).
(function (global) {
  "use strict";

  // Round constants: the first 32 bits of the fractional parts of the cube roots of the first 64 primes.
  var K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ]);
  // Initial hash value: the first 32 bits of the fractional parts of the square roots of the first 8 primes.
  var INITIAL_STATE = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
  var BLOCK_BYTES = 64;

  // Apply the compression function to the 64-byte block at `offset` of `view` (a DataView).
  // `words` is the 64-word message schedule, reused between blocks.
  function compress(state, words, view, offset) {
    var i, x, y;
    for (i = 0; i < 16; i += 1) {
      words[i] = view.getInt32(offset + 4 * i);  // big-endian
    }
    for (i = 16; i < 64; i += 1) {
      x = words[i - 15];
      y = words[i - 2];
      var sigma0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      var sigma1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      words[i] = (words[i - 16] + sigma0 + words[i - 7] + sigma1) | 0;
    }

    var a = state[0], b = state[1], c = state[2], d = state[3];
    var e = state[4], f = state[5], g = state[6], h = state[7];
    for (i = 0; i < 64; i += 1) {
      var bigSigma1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      var choice = (e & f) ^ (~e & g);
      var temp1 = (h + bigSigma1 + choice + K[i] + words[i]) | 0;
      var bigSigma0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      var majority = (a & b) ^ (a & c) ^ (b & c);
      var temp2 = (bigSigma0 + majority) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + temp1) | 0;
      d = c;
      c = b;
      b = a;
      a = (temp1 + temp2) | 0;
    }

    state[0] = (state[0] + a) | 0;
    state[1] = (state[1] + b) | 0;
    state[2] = (state[2] + c) | 0;
    state[3] = (state[3] + d) | 0;
    state[4] = (state[4] + e) | 0;
    state[5] = (state[5] + f) | 0;
    state[6] = (state[6] + g) | 0;
    state[7] = (state[7] + h) | 0;
  }

  function Sha256() {
    this.state = new Int32Array(INITIAL_STATE);
    this.words = new Int32Array(64);
    this.pending = new Uint8Array(BLOCK_BYTES);  // the start of a block that the next update completes
    this.pendingView = new DataView(this.pending.buffer);
    this.pendingLength = 0;
    this.byteCount = 0;
    this.finished = false;
  }

  // Add `bytes` (a Uint8Array or an ArrayBuffer) to the message and return this hash.
  Sha256.prototype.update = function (bytes) {
    if (this.finished) { throw new Error("Sha256.update() called after hexDigest(); create a new Sha256 for a new message"); }
    if (bytes instanceof ArrayBuffer) { bytes = new Uint8Array(bytes); }
    if (!(bytes instanceof Uint8Array)) { throw new TypeError("Sha256.update() takes a Uint8Array or an ArrayBuffer, not " + Object.prototype.toString.call(bytes)); }
    this.byteCount += bytes.length;

    var offset = 0;
    if (this.pendingLength > 0) {
      offset = Math.min(BLOCK_BYTES - this.pendingLength, bytes.length);
      this.pending.set(bytes.subarray(0, offset), this.pendingLength);
      this.pendingLength += offset;
      if (this.pendingLength < BLOCK_BYTES) { return this; }
      compress(this.state, this.words, this.pendingView, 0);
      this.pendingLength = 0;
    }

    var view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (; offset + BLOCK_BYTES <= bytes.length; offset += BLOCK_BYTES) {
      compress(this.state, this.words, view, offset);
    }
    this.pending.set(bytes.subarray(offset), 0);
    this.pendingLength = bytes.length - offset;
    return this;
  };

  // Return {words, length}: the 8 state words (signed 32-bit integers) after the
  // first `length` bytes, where `length` is the byte count of the whole 64-byte
  // blocks compressed so far. The bytes of a partial block are not included, so
  // a hash resumed from this state must be given the message from `length` on.
  Sha256.prototype.midstate = function () {
    if (this.finished) { throw new Error("Sha256.midstate() called after hexDigest(); the state of a finished hash includes the padding"); }
    return {words: Array.prototype.slice.call(this.state), length: this.byteCount - this.pendingLength};
  };

  // Return a Sha256 that continues from `midstate` (the object that midstate() returns).
  // Throws a TypeError naming the field when the object cannot be such a state.
  Sha256.fromMidstate = function (midstate) {
    var words = midstate && midstate.words;
    var length = midstate && midstate.length;
    if (!Array.isArray(words) || words.length !== 8 || !words.every(function (word) { return word === (word | 0); })) {
      throw new TypeError("Sha256.fromMidstate() needs `words`: 8 signed 32-bit integers, not " + JSON.stringify(words));
    }
    if (!Number.isSafeInteger(length) || length < 0 || length % BLOCK_BYTES !== 0) {
      throw new TypeError("Sha256.fromMidstate() needs `length`: a non-negative multiple of 64, not " + JSON.stringify(length));
    }
    var hash = new Sha256();
    hash.state.set(words);
    hash.byteCount = length;
    return hash;
  };

  // Hash `blob` (a Blob or File) in parts of `options.partBytes` and resolve to its hex digest.
  // With `options.midstate` the hash continues from that state and reads `blob` from the
  // state's length on. The next part is read while the current one is hashed, so at most
  // two parts are in memory at once. `options.onProgress(hashedBytes, midstate)` runs at the
  // start and after every part. When `options.signal` (an AbortSignal) is aborted, the
  // promise rejects with the signal's reason after the part being hashed.
  Sha256.hashBlob = async function (blob, options) {
    var partBytes = options.partBytes;
    if (!Number.isSafeInteger(partBytes) || partBytes <= 0) {
      throw new RangeError("Sha256.hashBlob() needs partBytes, a positive integer, not " + JSON.stringify(partBytes));
    }
    var hash = options.midstate ? Sha256.fromMidstate(options.midstate) : new Sha256();
    var start = hash.byteCount;
    if (start > blob.size) {
      throw new RangeError("the hashing state covers " + start + " bytes, but the file has only " + blob.size + "; hash it from the start");
    }
    var report = options.onProgress || function () {};

    report(start, hash.midstate());
    var next = blob.slice(start, start + partBytes).arrayBuffer();
    for (; start < blob.size; start += partBytes) {
      var part = await next;
      if (options.signal) { options.signal.throwIfAborted(); }
      var nextStart = start + partBytes;
      if (nextStart < blob.size) { next = blob.slice(nextStart, nextStart + partBytes).arrayBuffer(); }
      hash.update(part);
      report(Math.min(nextStart, blob.size), hash.midstate());
    }
    return hash.hexDigest();
  };

  // Pad the message, finish the hash and return its digest as 64 lowercase hexadecimal characters.
  Sha256.prototype.hexDigest = function () {
    if (this.finished) { throw new Error("Sha256.hexDigest() called twice; create a new Sha256 for a new message"); }
    var bitCount = this.byteCount * 8;  // exact while the message is under 2**50 bytes
    var padding = new Uint8Array((this.pendingLength < 56 ? 56 : 120) - this.pendingLength + 8);
    padding[0] = 0x80;
    var end = padding.length;
    var high = Math.floor(bitCount / 0x100000000);
    var low = bitCount >>> 0;
    padding[end - 8] = high >>> 24;
    padding[end - 7] = high >>> 16;
    padding[end - 6] = high >>> 8;
    padding[end - 5] = high;
    padding[end - 4] = low >>> 24;
    padding[end - 3] = low >>> 16;
    padding[end - 2] = low >>> 8;
    padding[end - 1] = low;
    this.update(padding);
    this.finished = true;

    var hex = "";
    for (var i = 0; i < 8; i += 1) {
      hex += (this.state[i] >>> 0).toString(16).padStart(8, "0");
    }
    return hex;
  };

  global.Sha256 = Sha256;
}(typeof window !== "undefined" ? window : self));
