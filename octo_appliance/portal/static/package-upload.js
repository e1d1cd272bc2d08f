/* The upload form with a progress bar: the file goes to POST /api/v1/packages by
   XMLHttpRequest (its upload progress events), with the session's CSRF token in the header.
   Without JavaScript the same form posts to /packages and works the same, without the bar. */
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.FormData) { return; }
  var input = document.getElementById("file");
  var error = document.getElementById("file-error");
  var line = document.getElementById("upload-progress-line");
  var bar = document.getElementById("upload-progress");
  var percent = document.getElementById("upload-percent");
  var button = form.querySelector("button[type=submit]");

  function fail(message) {
    error.textContent = message;
    error.hidden = false;
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", "file-error");
    button.disabled = false;
    input.focus();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!input.files || input.files.length === 0) { fail("Choose a package file."); return; }
    var file = input.files[0];
    var data = new FormData();
    data.append("file", file, file.name);
    var replace = form.elements.replace.checked ? "?replace=true" : "";
    var request = new XMLHttpRequest();
    request.open("POST", "/api/v1/packages" + replace);
    request.setRequestHeader("X-CSRF-Token", form.elements.csrf_token.value);
    request.upload.addEventListener("progress", function (progress) {
      if (!progress.lengthComputable) { return; }
      var share = Math.floor((progress.loaded / progress.total) * 100);
      bar.value = share;
      bar.textContent = percent.textContent = share + " %";
    });
    request.addEventListener("load", function () {
      var answer = {};
      try { answer = JSON.parse(request.responseText); } catch (ignored) { answer = {}; }
      if (request.status === 200 || request.status === 201) {
        bar.value = 100;
        percent.textContent = "100 %";
        window.location.assign("/packages?uploaded=" +
          encodeURIComponent(answer.package_id + " " + answer.version));
        return;
      }
      var problem = answer.error || {};
      var detail = (problem.details || []).filter(function (d) { return d.field === "file"; })[0];
      fail((detail ? detail.message : problem.message || "The upload failed (HTTP " + request.status + ").") +
        (problem.hint ? " (" + problem.hint + ")" : ""));
    });
    request.addEventListener("error", function () { fail("The upload was interrupted; try again."); });
    error.hidden = true;
    input.removeAttribute("aria-invalid");
    button.disabled = true;
    line.hidden = false;
    bar.value = 0;
    request.send(data);
  });
}());
