/* The live dashboard: a cell is swapped for the server's new HTML when its deployment starts,
   runs and ends (GET /dashboard/events, server-sent events; see portal/live.py). A stream that
   missed changes says "stale" and the page is drawn again. */
(function () {
  "use strict";
  var board = document.getElementById("dashboard");
  if (!board || !window.EventSource) { return; }
  var news = document.getElementById("dashboard-news");
  // the same page of projects as this page (?name=&skip=), so the stream reads only its cells
  var page = new URLSearchParams(window.location.search);
  page.set("version", board.dataset.version);
  var stream = new EventSource("/dashboard/events?" + page.toString());
  stream.addEventListener("cell", function (event) {
    var change = JSON.parse(event.data);
    var old = board.querySelector('td[data-cell="' + CSS.escape(change.cell) + '"]');
    if (!old) { return; }
    var template = document.createElement("template");
    template.innerHTML = change.html.trim();
    var cell = template.content.firstElementChild;
    old.replaceWith(cell);
    board.dataset.version = event.lastEventId;
    if (news) {
      var row = cell.parentNode.querySelector("th");
      var column = board.querySelectorAll("thead th")[cell.cellIndex];
      news.textContent = (row ? row.textContent : "") + " in " +
        (column ? column.textContent : "") + ": " + change.state.replace("_", " ");
    }
  });
  stream.addEventListener("stale", function () {
    stream.close();
    window.location.reload();
  });
}());
