// retrigger web view: the only script. Every page works without it; it
// adds the reader's local time to each <time> as a tooltip, and keeps a
// confirmed form from being sent twice. Written for this project; no
// library.
(function () {
  "use strict";
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var d = new Date(el.getAttribute("datetime"));
    if (!isNaN(d)) { el.title = d.toLocaleString(); }
  });
  document.querySelectorAll("form.confirm").forEach(function (form) {
    form.addEventListener("submit", function () {
      var b = form.querySelector("button[type=submit]");
      if (b) { setTimeout(function () { b.disabled = true; b.textContent = "working…"; }, 0); }
    });
  });
})();
