// Shared helpers for the pages: the CSRF token for same-origin fetches, SLA countdowns.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  window.telerad = {
    csrf: meta ? meta.content : "",
    post: function (url, body) {
      return fetch(url, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": window.telerad.csrf },
        body: JSON.stringify(body || {})
      });
    }
  };
  function fmt(s) {
    var neg = s < 0; s = Math.abs(Math.round(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var t = (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
    return neg ? "overdue " + t : t;
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var left = (Date.parse(el.getAttribute("data-due")) - now) / 1000;
      el.textContent = fmt(left);
      el.classList.toggle("late", left < 0);
    });
  }
  tick();
  setInterval(tick, 1000);
})();
