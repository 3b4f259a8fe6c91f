// Study page: claim/release, save and sign the report, addenda (same-origin JSON with the CSRF token).
(function () {
  "use strict";
  var claimBox = document.getElementById("claim");
  var uid = claimBox.getAttribute("data-study");
  var msg = document.getElementById("report-message");
  function say(text, bad) { msg.textContent = text; msg.className = bad ? "error" : "muted"; }
  function problem(r) {
    return r.json().then(function (p) { return Promise.reject(p.detail || p.title || ("HTTP " + r.status)); },
                         function () { return Promise.reject("HTTP " + r.status); });
  }
  function send(method, url, body) {
    return fetch(url, {
      method: method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": window.telerad.csrf },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) { return r.ok ? r.json() : problem(r); });
  }
  var show = document.getElementById("show-ohif");
  if (show) {  // the viewer loads only when asked: a modest PC opens the page fast
    show.addEventListener("click", function () {
      var frame = document.getElementById("ohif");
      frame.src = show.getAttribute("data-src");
      frame.hidden = false;
      show.hidden = true;
    });
  }
  var base = "/api/studies/" + encodeURIComponent(uid) + "/claim";
  claimBox.addEventListener("click", function (e) {
    var action = e.target.getAttribute && e.target.getAttribute("data-action");
    if (!action) { return; }
    var req = action === "claim" ? send("POST", base) : send("DELETE", base + (action === "break" ? "?force=true" : ""));
    req.then(function () { location.reload(); }, function (err) { say(err, true); });
  });
  var form = document.getElementById("report-form");
  if (form) {
    var templates = JSON.parse(document.getElementById("templates-data").textContent);
    var body = document.getElementById("report-body");
    var pristine = body.value;
    document.getElementById("template").addEventListener("change", function (e) {
      if (body.value === pristine) { body.value = pristine = templates[e.target.value] || ""; }
    });
    form.addEventListener("click", function (e) {
      var state = e.target.getAttribute && e.target.getAttribute("data-state");
      if (!state) { return; }
      var payload = { template: form.template.value, body: body.value };
      var url = "/api/reports/" + encodeURIComponent(uid);
      var req;
      if (state === "final") {
        say("Signing and filing the report…");
        req = send("POST", url + "/sign", payload);
      } else {
        payload.state = state;
        req = send("PUT", url, payload);
      }
      req.then(function (r) {
        if (state === "final") { location.reload(); } else { say("Saved as " + r.state + "."); pristine = body.value; }
      }, function (err) { say(err, true); });
    });
  }
  var add = document.getElementById("addendum-form");
  if (add) {
    add.addEventListener("submit", function (e) {
      e.preventDefault();
      send("POST", "/api/reports/" + encodeURIComponent(uid) + "/addenda", { text: add.text.value })
        .then(function () { location.reload(); }, function (err) { say(err, true); });
    });
  }
})();
