// Technician page: drag-and-drop DICOM upload with STOW-RS (multipart/related) and upload progress.
(function () {
  "use strict";
  var zone = document.getElementById("dropzone");
  var input = document.getElementById("files");
  var bar = document.getElementById("upload-progress");
  var msg = document.getElementById("upload-message");
  function say(text, bad) { msg.textContent = text; msg.className = bad ? "error" : "muted"; }
  function refresh() {
    fetch("/technician/rows", { credentials: "same-origin" }).then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { document.getElementById("rows").innerHTML = html; } });
  }
  function upload(files) {
    if (!files.length) { return; }
    var boundary = "telerad-" + Math.random().toString(16).slice(2);
    var parts = [];
    for (var i = 0; i < files.length; i++) {
      parts.push("\r\n--" + boundary + "\r\nContent-Type: application/dicom\r\n\r\n");
      parts.push(files[i]);
    }
    parts.push("\r\n--" + boundary + "--\r\n");
    var body = new Blob(parts);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/dicomweb/studies");
    xhr.setRequestHeader("Content-Type", 'multipart/related; type="application/dicom"; boundary=' + boundary);
    xhr.setRequestHeader("Accept", "application/dicom+json");
    xhr.setRequestHeader("X-CSRF-Token", window.telerad.csrf);
    bar.hidden = false; bar.value = 0;
    xhr.upload.onprogress = function (e) { if (e.lengthComputable) { bar.value = Math.round(100 * e.loaded / e.total); } };
    xhr.onload = function () {
      bar.value = 100;
      if (xhr.status >= 200 && xhr.status < 300) {
        say(files.length + " file(s) uploaded and stored.");
      } else {
        var detail = "";
        try { var p = JSON.parse(xhr.responseText); detail = p.detail || p.title || ""; } catch (err) { detail = ""; }
        say("Upload refused (HTTP " + xhr.status + ")" + (detail ? ": " + detail : "") + ".", true);
      }
      refresh();
    };
    xhr.onerror = function () { say("Upload failed: the server could not be reached.", true); };
    say("Uploading " + files.length + " file(s)…");
    xhr.send(body);
  }
  ["dragenter", "dragover"].forEach(function (n) {
    zone.addEventListener(n, function (e) { e.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (n) {
    zone.addEventListener(n, function (e) { e.preventDefault(); zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (e) { upload(e.dataTransfer.files); });
  input.addEventListener("change", function () { upload(input.files); });
  setInterval(refresh, 15000);
})();
