// Resumable browser upload: the same session API as `python -m agent upload`
// (declare size and sha256, PUT byte ranges, complete), with the session
// cookie and the CSRF token. A Web Worker (sha256_worker.js) reads the file in
// parts of data-hash-part-bytes and hashes them with the incremental Sha256 of
// sha256.js, so files of any size go this way with bounded memory and the page
// stays responsive. Where the browser has no Web Workers, the page hashes the
// file itself and shows a notice. After a broken connection the page reads from the
// portal how many bytes arrived and continues there.
//
// The hashing state survives a reload: after every part the page stores the
// SHA-256 midstate in localStorage under the file's name, size and
// lastModified, and once hashing ends it stores the digest instead. Choosing
// the same file after a reload continues hashing from the stored state, or
// skips it, and continues the open upload at the portal's offset. The portal
// computes the digest of the received bytes when the upload completes. A
// wrong stored state therefore ends in upload_digest_mismatch, never in a
// wrong bundle, and the page then deletes the stored state.
// Without JavaScript the plain form posts the file in one request.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.Sha256 || !window.fetch || !window.Blob || !Blob.prototype.slice || !Blob.prototype.arrayBuffer || !window.AbortController) { return; }

  var RETRIES = 5;
  var STORE_PREFIX = "accel-cert.upload-hash:";
  // Stored hashing states older than this are deleted when the page loads.
  var STORE_MAX_AGE_MS = 7 * 24 * 3600 * 1000;
  var SHA256_PATTERN = /^[0-9a-f]{64}$/;
  var status = document.getElementById("upload-status");
  var notice = document.getElementById("upload-notice");
  var progress = document.getElementById("upload-progress");
  var submitButton = form.querySelector("button[type=submit]");
  var cancelButton = document.getElementById("upload-cancel");
  var chunkBytes = parseInt(form.dataset.chunkBytes, 10);
  var hashPartBytes = parseInt(form.dataset.hashPartBytes, 10);
  var maxBytes = parseInt(form.dataset.maxBytes, 10);
  var csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var running = null;  // the AbortController of the upload in progress

  function show(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  function percentOf(bytes, size) {
    return (size > 0 ? Math.floor(100 * bytes / size) : 100) + "%";
  }

  function showHashing(hashedBytes, size) {
    progress.value = size > 0 ? hashedBytes / size : 1;
    show(form.dataset.hashingText.replace("%(percent)s", percentOf(hashedBytes, size)));
  }

  // Stored hashing state -------------------------------------------------------

  // Return localStorage, or null where the browser disables it; the page then hashes from the start after a reload.
  function storage() {
    try { return window.localStorage; } catch (error) { return null; }
  }

  function storeKey(file) {
    return STORE_PREFIX + JSON.stringify([file.name, file.size, file.lastModified]);
  }

  function isMidstateFor(midstate, file) {
    return midstate !== null && typeof midstate === "object" && Array.isArray(midstate.words) && midstate.words.length === 8 &&
      midstate.words.every(function (word) { return word === (word | 0); }) &&
      Number.isSafeInteger(midstate.length) && midstate.length >= 0 && midstate.length % 64 === 0 && midstate.length <= file.size;
  }

  // Return the stored {sha256} or {midstate} of `file`, or null. A record of another shape is deleted.
  function readState(file) {
    var store = storage();
    var text = store && store.getItem(storeKey(file));
    if (!text) { return null; }
    var record = null;
    try { record = JSON.parse(text); } catch (error) { record = null; }
    if (record && typeof record.sha256 === "string" && SHA256_PATTERN.test(record.sha256)) { return {sha256: record.sha256}; }
    if (record && isMidstateFor(record.midstate, file)) { return {midstate: record.midstate}; }
    forgetState(file);
    return null;
  }

  function saveState(file, state) {
    var store = storage();
    if (!store) { return; }
    try {
      store.setItem(storeKey(file), JSON.stringify(Object.assign({savedAt: Date.now()}, state)));
    } catch (error) {
      // Storage full or denied: the upload goes on, only a reload would hash from the start.
    }
  }

  function forgetState(file) {
    var store = storage();
    if (store) { store.removeItem(storeKey(file)); }
  }

  function pruneStates() {
    var store = storage();
    if (!store) { return; }
    var keys = [];
    for (var i = 0; i < store.length; i += 1) { keys.push(store.key(i)); }
    keys.filter(function (key) { return key.indexOf(STORE_PREFIX) === 0; }).forEach(function (key) {
      var savedAt = null;
      try { savedAt = JSON.parse(store.getItem(key)).savedAt; } catch (error) { savedAt = null; }
      if (!(Date.now() - savedAt < STORE_MAX_AGE_MS)) { store.removeItem(key); }
    });
  }

  // Hashing ----------------------------------------------------------------------

  // Hash `file` in a Web Worker from `midstate` (or the start); the worker stops when `signal` aborts.
  function hashInWorker(worker, file, midstate, signal, onProgress) {
    return new Promise(function (resolve, reject) {
      signal.addEventListener("abort", function () {
        worker.terminate();
        reject(signal.reason);
      });
      worker.onmessage = function (event) {
        var message = event.data;
        if (signal.aborted) { return; }  // posted before terminate() took effect
        if (message.type === "progress") { onProgress(message.hashed, message.midstate); return; }
        worker.terminate();
        if (message.type === "done") { resolve(message.sha256); } else { reject(new Error(message.message)); }
      };
      worker.onerror = function (event) {
        worker.terminate();
        reject(new Error(form.dataset.failedText + ": " + (event.message || "the hashing worker failed to start")));
      };
      var sha256Url = new URL(form.dataset.sha256Url, window.location.href).href;
      worker.postMessage({sha256Url: sha256Url, file: file, partBytes: hashPartBytes, midstate: midstate});
    });
  }

  // Return a new Web Worker for hashing, or null where the browser has none (then the page hashes itself).
  function startWorker() {
    if (typeof window.Worker !== "function") { return null; }
    try { return new Worker(form.dataset.workerUrl); } catch (error) { return null; }
  }

  // Resolve to {sha256, fromStoredState} for `file`: the stored digest, or a hash continued from
  // the stored midstate, or a new hash. fromStoredState is true in the first two cases.
  async function hashFile(file, signal) {
    var stored = readState(file);
    if (stored && stored.sha256) { return {sha256: stored.sha256, fromStoredState: true}; }
    var midstate = stored ? stored.midstate : null;
    if (midstate && midstate.length > 0) {
      notice.textContent = form.dataset.continuingText.replace("%(percent)s", percentOf(midstate.length, file.size));
    }

    function onProgress(hashedBytes, state) {
      showHashing(hashedBytes, file.size);
      saveState(file, {midstate: state});
    }
    var worker = startWorker();
    if (worker === null) { notice.textContent = form.dataset.noWorkerText; }
    var sha256 = worker ? await hashInWorker(worker, file, midstate, signal, onProgress)
      : await Sha256.hashBlob(file, {partBytes: hashPartBytes, midstate: midstate, signal: signal, onProgress: onProgress});
    saveState(file, {sha256: sha256});
    return {sha256: sha256, fromStoredState: Boolean(midstate && midstate.length > 0)};
  }

  // Sending ----------------------------------------------------------------------

  function pause(milliseconds) {
    return new Promise(function (resolve) { setTimeout(resolve, milliseconds); });
  }

  // One API request; a reply with a JSON error body becomes an Error with its code and detail.
  function call(method, url, body, headers) {
    var options = {
      method: method, body: body, credentials: "same-origin", signal: running.signal,
      headers: Object.assign({"X-CSRFToken": csrfToken, "Accept": "application/json"}, headers || {})
    };
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (response.ok) { return data; }
        var error = new Error(data.detail || form.dataset.failedText + " (HTTP " + response.status + ")");
        error.code = data.code || "http_" + response.status;
        error.status = response.status;
        throw error;
      });
    });
  }

  function declare(file, sha256) {
    var body = JSON.stringify({size: file.size, sha256: sha256, name: file.name, vendor: form.elements.vendor.value});
    return call("POST", form.dataset.createUrl, body, {"Content-Type": "application/json"});
  }

  function sendRange(file, session) {
    var start = session.received;
    var end = Math.min(start + chunkBytes, file.size) - 1;
    var headers = {"Content-Type": "application/octet-stream", "Content-Range": "bytes " + start + "-" + end + "/" + file.size};
    return call("PUT", session.upload_url, file.slice(start, end + 1), headers);
  }

  // Send every missing range. A network failure (fetch rejects with a TypeError) or 409
  // reads `received` from the portal and continues, at most RETRIES times in total.
  async function sendAll(file, session) {
    var breaks = 0;
    while (session.received < file.size) {
      progress.value = session.received / file.size;
      try {
        session = await sendRange(file, session);
      } catch (error) {
        if (!(error instanceof TypeError) && error.status !== 409) { throw error; }
        breaks += 1;
        if (breaks > RETRIES) { throw new Error(form.dataset.brokenText); }
        show(form.dataset.resumingText.replace("%(attempt)s", breaks).replace("%(retries)s", RETRIES));
        await pause(Math.min(30000, 500 * Math.pow(2, breaks - 1)));
        running.signal.throwIfAborted();
        session = await call("GET", session.upload_url);
      }
    }
    progress.value = 1;
    return session;
  }

  async function upload(file) {
    var hashed = await hashFile(file, running.signal);
    for (var attempt = 0; attempt < 2; attempt += 1) {
      var session = await declare(file, hashed.sha256);
      if (session.submission && hashed.fromStoredState) {
        // The portal already stores a bundle with this digest and checks no bytes of this file,
        // so a stored state made from another file would go unnoticed: hash the whole file.
        // The same digest again would get the same submission, so only another one is declared.
        forgetState(file);
        var stored = hashed.sha256;
        hashed = await hashFile(file, running.signal);
        if (hashed.sha256 !== stored) { session = await declare(file, hashed.sha256); }
      }
      if (session.submission) { return session.submission; }
      show(form.dataset.sendingText);
      try {
        session = await sendAll(file, session);
        return await call("POST", session.complete_url);
      } catch (error) {
        // The portal expired an abandoned open upload: start one new upload from byte 0.
        if (error.code !== "upload_session_expired" || attempt > 0) { throw error; }
      }
    }
  }

  // The upload made no new submission: say why, with the portal's notice, and link to the stored submission.
  function showNotice(submission) {
    progress.hidden = true;
    show(submission.notice + " [" + submission.notice_code + "]");
    var link = document.createElement("a");
    link.href = submission.url;
    link.textContent = form.dataset.openText.replace("%(number)s", submission.id);
    notice.replaceChildren(link);
  }

  function finish() {
    running = null;
    submitButton.disabled = false;
    cancelButton.hidden = true;
  }

  form.addEventListener("submit", function (event) {
    var file = form.elements.bundle.files[0];
    if (!file) { return; }  // the plain form reports the missing file
    event.preventDefault();
    if (file.size > maxBytes) {  // reject before hashing, because the portal would reject the declared size
      show(form.dataset.tooLargeText, true);
      return;
    }
    running = new AbortController();
    var signal = running.signal;
    submitButton.disabled = true;
    cancelButton.hidden = false;
    progress.hidden = false;
    notice.textContent = "";
    upload(file).then(function (submission) {
      forgetState(file);
      if (submission.notice_code) {
        showNotice(submission);
        finish();
        return;
      }
      window.location.assign(submission.url);
    }).catch(function (error) {
      if (signal.aborted) {
        show(form.dataset.cancelledText);
      } else {
        // A wrong stored state gives a wrong declared digest; delete it so the next try hashes the whole file.
        if (error.code === "upload_digest_mismatch") { forgetState(file); }
        show((error.message || String(error)) + (error.code ? " [" + error.code + "]" : ""), true);
      }
      finish();
    });
  });

  cancelButton.addEventListener("click", function () {
    if (running) { running.abort(); }
  });

  pruneStates();
}());
