// Keyboard shortcuts of the reviewer page: G, S, B judge the left output
// against the right one; the left and right arrows move between pairs.
(function () {
  "use strict";
  var form = document.getElementById("judge-form");
  var keys = { g: "good", s: "same", b: "bad" };

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) { return; }

    var key = event.key.toLowerCase();
    if (form && !form.hasAttribute("data-closed") && keys[key]) {
      event.preventDefault();
      form.querySelector('input[name="judgement"]').value = keys[key];
      form.submit();
      return;
    }
    var link = null;
    if (event.key === "ArrowLeft") { link = document.getElementById("previous-pair"); }
    if (event.key === "ArrowRight") { link = document.getElementById("next-pair"); }
    if (link) {
      event.preventDefault();
      window.location.href = link.getAttribute("href");
    }
  });
})();
