// Resumable browser upload: the same session API as `python -m agent upload`
// (declare size and sha256, PUT byte ranges, complete), with the session
// cookie and the CSRF token. The page reads the file in parts of
// data-hash-part-bytes and hashes them with the incremental Sha256 of sha256.js,
// so files of any size go this way with bounded memory. After a broken
// connection the page reads from the portal how many bytes arrived and
// continues there. A page reload with the same file hashes it again and
// continues the open upload at the portal's offset.
// Without JavaScript the plain form posts the file in one request.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.Sha256 || !window.fetch || !window.Blob || !Blob.prototype.slice || !Blob.prototype.arrayBuffer) { return; }

  var RETRIES = 5;
  var status = document.getElementById("upload-status");
  var progress = document.getElementById("upload-progress");
  var chunkBytes = parseInt(form.dataset.chunkBytes, 10);
  var hashPartBytes = parseInt(form.dataset.hashPartBytes, 10);
  var maxBytes = parseInt(form.dataset.maxBytes, 10);
  var csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  function show(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  function showHashing(hashedBytes, size) {
    var percent = size > 0 ? Math.floor(100 * hashedBytes / size) : 100;
    progress.value = size > 0 ? hashedBytes / size : 1;
    show(form.dataset.hashingText.replace("%(percent)s", percent + "%"));
  }

  // Hash the file part by part. The next part is read while this one is hashed,
  // so at most two parts of hashPartBytes are in memory at once.
  async function hashFile(file) {
    var hash = new Sha256();
    var next = file.slice(0, hashPartBytes).arrayBuffer();
    showHashing(0, file.size);
    for (var start = 0; start < file.size; start += hashPartBytes) {
      var part = await next;
      var nextStart = start + hashPartBytes;
      if (nextStart < file.size) { next = file.slice(nextStart, nextStart + hashPartBytes).arrayBuffer(); }
      hash.update(part);
      showHashing(Math.min(nextStart, file.size), file.size);
    }
    return hash.hexDigest();
  }

  function pause(milliseconds) {
    return new Promise(function (resolve) { setTimeout(resolve, milliseconds); });
  }

  // One API request; a reply with a JSON error body becomes an Error with its code and detail.
  function call(method, url, body, headers) {
    var options = {
      method: method, body: body, credentials: "same-origin",
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
        session = await call("GET", session.upload_url);
      }
    }
    progress.value = 1;
    return session;
  }

  async function upload(file) {
    var sha256 = await hashFile(file);
    for (var attempt = 0; attempt < 2; attempt += 1) {
      var session = await declare(file, sha256);
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

  form.addEventListener("submit", function (event) {
    var file = form.elements.bundle.files[0];
    if (!file) { return; }  // the plain form reports the missing file
    event.preventDefault();
    if (file.size > maxBytes) {  // reject before hashing, because the portal would reject the declared size
      show(form.dataset.tooLargeText, true);
      return;
    }
    form.querySelector("button[type=submit]").disabled = true;
    progress.hidden = false;
    upload(file).then(function (submission) {
      window.location.assign(submission.url);
    }).catch(function (error) {
      show((error.message || String(error)) + (error.code ? " [" + error.code + "]" : ""), true);
      form.querySelector("button[type=submit]").disabled = false;
    });
  });
}());
