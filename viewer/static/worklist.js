// Live worklist: refetch the table body when the server says something changed (SSE).
(function () {
  "use strict";
  if (!window.EventSource) { return; }
  var live = document.getElementById("live");
  var query = new URLSearchParams(new FormData(document.getElementById("filters"))).toString();
  var pending = false;
  function refresh() {
    if (pending) { return; }
    pending = true;
    fetch("/worklist/rows?" + query, { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.text() : Promise.reject(r.status);
    }).then(function (html) {
      document.getElementById("rows").innerHTML = html;
      live.textContent = "live · updated " + new Date().toLocaleTimeString();
    }).catch(function () { live.textContent = "live updates paused"; }).finally(function () { pending = false; });
  }
  var es = new EventSource("/worklist/stream");
  es.addEventListener("worklist.changed", refresh);
  es.onerror = function () { live.textContent = "reconnecting…"; };
  es.onopen = function () { live.textContent = "live"; };
})();
