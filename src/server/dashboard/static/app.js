// spm dashboard: the little JavaScript it needs (served under a strict CSP, no inline code).
// 1. Forms with data-confirm ask before submitting.
// 2. The run page polls its progress endpoint while the run is active.
(function () {
  "use strict";

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var msg = form && form.getAttribute && form.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) {
      ev.preventDefault();
    }
  });

  function pollRun(box) {
    var url = box.getAttribute("data-progress-url");
    var note = document.getElementById("live-note");
    var delay = 2000;
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) {
          if (!r.ok) { throw new Error("HTTP " + r.status); }
          return r.json();
        })
        .then(function (p) {
          box.querySelectorAll("[data-field]").forEach(function (el) {
            var v = p[el.getAttribute("data-field")];
            el.textContent = v === null || v === undefined ? "" : String(v);
          });
          (p.hosts || []).forEach(function (h) {
            var cell = document.querySelector('[data-host="' + String(h.id) + '"]');
            if (cell) {
              var badge = document.createElement("span");
              badge.className = "badge st-" + String(h.status);
              badge.textContent = String(h.status).replace(/_/g, " ");
              cell.replaceChildren(badge);
            }
          });
          if (p.active) {
            setTimeout(tick, delay);
          } else if (note) {
            note.textContent = "The run has finished (" + String(p.status) + ").";
          }
        })
        .catch(function (e) {
          if (note) { note.textContent = "Live updates paused: " + e.message; }
          delay = Math.min(delay * 2, 30000);
          setTimeout(tick, delay);
        });
    }
    setTimeout(tick, delay);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("run-live");
    if (box && box.getAttribute("data-active") === "true") {
      pollRun(box);
    }
  });
})();
