// Follows a running run's log: asks /api/runs/<id>/log from the offset it has, once a second,
// until the server says the run ended (X-Run-Running: 0); then reloads for the nodes table.
(function () {
  "use strict";
  var pre = document.getElementById("log");
  if (!pre || pre.dataset.running !== "1") return;
  var offset = Number(pre.dataset.offset || 0);
  function poll() {
    fetch(pre.dataset.url + "?offset=" + offset, { credentials: "same-origin" })
      .then(function (answer) {
        if (!answer.ok) throw new Error("log: HTTP " + answer.status);
        var next = Number(answer.headers.get("X-Log-Offset"));
        var running = answer.headers.get("X-Run-Running") === "1";
        return answer.text().then(function (text) {
          if (text) {
            var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
            pre.appendChild(document.createTextNode(text));
            if (atEnd) pre.scrollTop = pre.scrollHeight;
          }
          offset = next;
          if (running) { setTimeout(poll, 1000); } else { window.location.reload(); }
        });
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 1000);
})();
