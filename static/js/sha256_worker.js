// Web Worker that computes the sha256 of one File for the upload page, so the
// page stays responsive while a large bundle is hashed. The page posts one
// request, and the worker replies with messages:
//
//   request:  {sha256Url, file, partBytes, midstate}   sha256Url: the absolute URL of sha256.js;
//             midstate: null, or a Sha256.prototype.midstate() object for the start of `file`
//   progress: {type: "progress", hashed, midstate}     at the start and after every part
//   done:     {type: "done", sha256}                   64 lowercase hexadecimal characters
//   error:    {type: "error", message}
//
// The reading and hashing are Sha256.hashBlob() of sha256.js, the same code
// that the page runs itself where Web Workers are missing. The page cancels by
// terminating the worker.
"use strict";

self.onmessage = function (event) {
  var request = event.data;
  hash(request).then(function (sha256) {
    self.postMessage({type: "done", sha256: sha256});
  }).catch(function (error) {
    self.postMessage({type: "error", message: error.message || String(error)});
  });
};

async function hash(request) {
  self.importScripts(request.sha256Url);
  return self.Sha256.hashBlob(request.file, {
    partBytes: request.partBytes,
    midstate: request.midstate,
    onProgress: function (hashed, midstate) { self.postMessage({type: "progress", hashed: hashed, midstate: midstate}); }
  });
}
