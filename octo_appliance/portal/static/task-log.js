/* The task page's live log: follows the API's SSE stream, appends lines in batches (one
   DOM update per frame), keeps at most MAX_ROWS rows (older ones stay a click away), pauses
   following when the reader scrolls up, narrows the log to one target, loads earlier lines.
   No inline script: the CSP allows only files from this origin. */
(function () {
  "use strict";
  var MAX_ROWS = 2000;
  var STEP = /^Step '(.+)' \(([^)]*)\) started\.$/;
  var ARTIFACT = /^artifact (.+)$/;
  var panel = document.getElementById("log");
  if (!panel) { return; }
  var taskId = panel.dataset.task;
  var list = document.getElementById("log-lines");
  var scroller = document.getElementById("log-scroll");
  var followButton = document.getElementById("follow");
  var status = document.getElementById("log-status");
  var targetSelect = document.getElementById("log-target");
  var artifacts = document.getElementById("artifact-list");
  var count = document.getElementById("log-count");
  var following = true;
  var queue = [];       // lines received, not yet in the page
  var held = 0;         // lines received while paused
  var scheduled = false;
  var programmatic = false;
  var rows = list.querySelectorAll("li.line").length;
  var onlyTarget = "";

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function row(line) {
    var li = el("li", "line lvl-" + line.level);
    if (line.level === "highlight" && STEP.test(line.message)) { li.classList.add("step-start"); }
    li.dataset.seq = line.seq;
    if (line.target) { li.dataset.target = line.target.id; }
    li.appendChild(el("span", "seq", String(line.seq)));
    var time = el("time", "", (line.time || "").slice(11, 19));
    time.setAttribute("datetime", line.time || "");
    li.appendChild(time);
    li.appendChild(el("span", "lvl", line.level));
    li.appendChild(el("span", "tgt", line.target ? line.target.name : ""));
    li.appendChild(el("span", "msg", line.message));
    if (onlyTarget && li.dataset.target !== onlyTarget) { li.hidden = true; }
    return li;
  }

  function earlierLink(before) {
    var old = list.querySelector("li.earlier");
    if (old) { old.remove(); }
    if (before <= 1) { return; }
    var li = el("li", "earlier");
    var a = el("a", "", "Show earlier lines (before line " + before + ")");
    a.href = "/tasks/" + taskId + "?before=" + before + "#log";
    a.dataset.before = before;
    li.appendChild(a);
    list.insertBefore(li, list.firstChild);
  }

  function trim() {
    var extra = rows - MAX_ROWS;
    if (extra <= 0) { return; }
    var lines = list.querySelectorAll("li.line");
    for (var i = 0; i < extra; i++) { lines[i].remove(); }
    rows -= extra;
    earlierLink(Number(lines[extra].dataset.seq));
  }

  function showCount() {
    var lines = list.querySelectorAll("li.line");
    var last = lines.length ? Number(lines[lines.length - 1].dataset.seq) : 0;
    count.textContent = "(" + last + " lines" + (last > rows ? ", showing " + rows : "") + ")";
  }

  function noteArtifact(line) {
    var found = line.level === "info" && ARTIFACT.exec(line.message);
    if (!found || !artifacts) { return; }
    artifacts.appendChild(el("li", "", found[1] + (line.target ? " on " + line.target.name : "")));
  }

  function toBottom() {
    programmatic = true;
    scroller.scrollTop = scroller.scrollHeight;
  }

  function flush() {
    scheduled = false;
    if (!following || queue.length === 0) { return; }
    var batch = queue;
    queue = [];
    if (batch.length >= MAX_ROWS) {  // more than a window arrived: show its end only
      batch = batch.slice(batch.length - MAX_ROWS);
      list.querySelectorAll("li.line").forEach(function (node) { node.remove(); });
      rows = 0;
      earlierLink(batch[0].seq);
    }
    var fragment = document.createDocumentFragment();
    batch.forEach(function (line) { fragment.appendChild(row(line)); });
    list.appendChild(fragment);
    rows += batch.length;
    trim();
    showCount();
    toBottom();
  }

  function schedule() {
    if (scheduled) { return; }
    scheduled = true;
    // a background tab gets no animation frames: a timer flushes there
    if (document.hidden) { setTimeout(flush, 500); } else { requestAnimationFrame(flush); }
  }

  function showFollow() {
    followButton.setAttribute("aria-pressed", following ? "true" : "false");
    followButton.textContent = following ? "Following" :
      (held ? "Paused: " + held + " new line" + (held === 1 ? "" : "s") + ", follow" : "Paused: follow");
  }

  function setFollowing(on) {
    following = on;
    if (on) { held = 0; schedule(); }
    showFollow();
  }

  function receive(line) {
    queue.push(line);
    noteArtifact(line);
    if (queue.length > 4 * MAX_ROWS) { queue = queue.slice(queue.length - MAX_ROWS); }
    if (following) { schedule(); } else { held += 1; showFollow(); }
  }

  function applyTarget() {
    onlyTarget = targetSelect.value;
    list.querySelectorAll("li.line").forEach(function (li) {
      li.hidden = Boolean(onlyTarget) && li.dataset.target !== onlyTarget;
    });
  }

  function loadEarlier(link) {
    setFollowing(false);
    var before = link.dataset.before;
    fetch("/tasks/" + taskId + "/lines?before=" + encodeURIComponent(before),
          { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (answer) {
        if (!answer.ok) { throw new Error("HTTP " + answer.status); }
        return answer.text();
      })
      .then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html;
        var height = scroller.scrollHeight;
        var added = template.content.querySelectorAll("li.line").length;
        template.content.querySelectorAll("li.line").forEach(function (li) {
          if (onlyTarget && li.dataset.target !== onlyTarget) { li.hidden = true; }
        });
        link.parentNode.replaceWith(template.content);
        rows += added;
        showCount();
        programmatic = true;
        scroller.scrollTop += scroller.scrollHeight - height;  // keep the reader's place
      })
      .catch(function (error) { status.textContent = "Could not load earlier lines: " + error.message; });
  }

  list.addEventListener("click", function (event) {
    var link = event.target.closest("li.earlier a");
    if (link) { event.preventDefault(); loadEarlier(link); }
  });
  targetSelect.addEventListener("change", applyTarget);
  followButton.hidden = panel.dataset.live !== "true";
  followButton.addEventListener("click", function () { setFollowing(!following); });
  scroller.addEventListener("scroll", function () {
    if (programmatic) { programmatic = false; return; }
    var atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 8;
    if (following && !atBottom) { setFollowing(false); }
    else if (!following && atBottom) { setFollowing(true); }
  });
  showFollow();
  toBottom();

  if (panel.dataset.live !== "true" || !window.EventSource) { return; }
  var since = Number(panel.dataset.last) || 0;
  var stream = new EventSource("/api/v1/tasks/" + taskId + "/log/stream?since=" + since);
  stream.addEventListener("log", function (event) { receive(JSON.parse(event.data)); });
  stream.addEventListener("end", function (event) {
    stream.close();
    var end = JSON.parse(event.data);
    status.textContent = "The task has ended (" + end.state.replace("_", " ") + ").";
    panel.dataset.live = "false";
    panel.dataset.ended = end.state;
    var progress = document.getElementById("progress");
    if (progress && window.htmx) {
      window.htmx.ajax("GET", "/tasks/" + taskId + "/progress", { target: "#progress", swap: "outerHTML" });
    }
  });
  stream.addEventListener("error", function () {
    if (stream.readyState === EventSource.CLOSED) { status.textContent = "The log stream closed; reload to follow again."; }
  });
}());
