// Stroke team page: acknowledge as the logged-in user; live refresh from the alert stream (SSE).
(function () {
  "use strict";
  var box = document.getElementById("alerts");
  var live = document.getElementById("live");
  function refresh() {
    fetch("/stroke/rows", { credentials: "same-origin" }).then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { box.innerHTML = html; live.textContent = "live · " + new Date().toLocaleTimeString(); } });
  }
  box.addEventListener("click", function (e) {
    var id = e.target.getAttribute && e.target.getAttribute("data-ack");
    if (!id) { return; }
    e.target.disabled = true;
    window.telerad.post("/api/alerts/" + id + "/ack", {}).then(function (r) {
      if (!r.ok) { return r.json().then(function (p) { alert(p.detail || p.title); }); }
    }).finally(refresh);
  });
  if (window.EventSource) {
    var es = new EventSource("/api/alerts/stream");
    ["alert.created", "alert.sent", "alert.acknowledged", "alert.escalated", "alert.undeliverable", "alert.unanswered"]
      .forEach(function (n) { es.addEventListener(n, refresh); });
    es.onerror = function () { live.textContent = "reconnecting…"; };
  }
})();
