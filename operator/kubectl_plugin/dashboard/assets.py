"""The page's two files, served by the dashboard itself (no CDN: it works air-gapped).

The script opens the page's Server-Sent Events stream and puts each pushed
fragment in place of the live part (the browser's EventSource reconnects by
itself; nothing polls), and counts a path stage's soak down between pushes.
"""

from __future__ import annotations

LIVE_JS = """\
"use strict";
(function () {
  // A soak's time left, counted down here between pushes: nothing is asked of the server.
  function countdown() {
    var now = Date.now();
    document.querySelectorAll("[data-until]").forEach(function (element) {
      var until = Date.parse(element.dataset.until);
      if (isNaN(until)) { return; }
      var left = Math.max(0, Math.round((until - now) / 1000));
      var minutes = Math.floor(left / 60), seconds = left % 60;
      element.textContent = left < 120 ? left + "s"
        : minutes < 10 && seconds ? minutes + "m" + seconds + "s" : minutes + "m";
    });
  }
  window.setInterval(countdown, 1000);
  var stream = document.body.dataset.stream;
  var live = document.getElementById("live");
  if (!stream || !live || !window.EventSource) { return; }
  var source = new EventSource(stream);
  source.addEventListener("update", function (event) {
    live.innerHTML = event.data;
    countdown();
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  });
  source.addEventListener("open", function () { document.body.dataset.connected = "yes"; });
  source.addEventListener("error", function () { document.body.dataset.connected = "no"; });
})();
"""

# Colours meet WCAG AA contrast on white; the layout folds to one column on a phone.
DASHBOARD_CSS = """\
:root { font-family: system-ui, sans-serif; color: #1f2328; background: #ffffff; }
body { margin: 0; }
header { background: #24292f; padding: 0.6rem 1rem; }
header nav { display: flex; flex-wrap: wrap; gap: 1.2rem; }
header a { color: #ffffff; font-weight: 600; text-decoration: none; }
header a:hover { text-decoration: underline; }
header { display: flex; flex-wrap: wrap; justify-content: space-between; gap: 0.6rem; }
header form.account { display: flex; align-items: center; gap: 0.6rem; margin: 0; color: #ffffff; }
header form.account button { font-size: 0.9rem; padding: 0.2rem 0.6rem; }
a.signin { font-weight: 600; }
main { padding: 1rem; max-width: 1200px; margin: 0 auto; }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 0.5rem; top: 0.5rem; background: #ffffff; color: #0550ae; padding: 0.3rem; }
a { color: #0550ae; }
a:focus, button:focus, select:focus, summary:focus {
  outline: 3px solid #0969da; outline-offset: 2px; }
h1 { font-size: 1.4rem; word-break: break-all; }
h2 { font-size: 1.1rem; margin-top: 1.5rem; }
.scope { color: #57606a; }
.filters { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; margin: 1rem 0; }
.filters select, .filters button, .actions button { font-size: 1rem; padding: 0.35rem 0.7rem; }
.actions { display: flex; flex-wrap: wrap; gap: 0.5rem; margin: 1rem 0; }
.actions form { margin: 0; }
.actions button {
  border: 1px solid #57606a; border-radius: 6px; background: #f6f8fa; color: #1f2328;
  cursor: pointer;
}
.actions button.abort { border-color: #a40e26; color: #a40e26; }
.stage-actions { list-style: none; padding: 0; margin: 0; display: grid; gap: 0.5rem; }
.stage-actions li { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; }
.stage-actions form { display: flex; gap: 0.4rem; align-items: center; }
.stage-actions input { font-size: 1rem; padding: 0.3rem; max-width: 12rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.92rem; }
caption { text-align: left; color: #57606a; padding: 0.3rem 0; }
th, td {
  text-align: left; padding: 0.35rem 0.5rem; border-bottom: 1px solid #d0d7de; vertical-align: top;
}
th { background: #f6f8fa; }
td.phase.failed, td.phase.rolledback, td.phase.aborted { color: #a40e26; font-weight: 600; }
td.phase.succeeded { color: #116329; font-weight: 600; }
.error { background: #ffebe9; border: 1px solid #a40e26; color: #82071e; padding: 0.5rem; }
.done { background: #dafbe1; border: 1px solid #116329; color: #0f5323; padding: 0.5rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.25rem 1rem; }
dt { font-weight: 600; }
dd { margin: 0; word-break: break-word; }
ol.steps li.current { font-weight: 600; background: #fff8c5; }
figure.analysis { margin: 1rem 0; }
figure.analysis figcaption { font-weight: 600; }
svg.plot { width: 100%; max-width: 640px; height: auto; display: block; }
.analysis-body { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.analysis-body svg.plot { flex: 1 1 420px; }
.analysis-body .scroll { flex: 1 1 320px; min-width: 0; }
figure.analysis .range h3 { font-size: 0.95rem; margin: 0.8rem 0 0.3rem; }
.note { color: #57606a; }
table.measurements td { white-space: nowrap; }
table.measurements td:last-child { white-space: normal; min-width: 12em; }
table.measurements tr.failed td:nth-child(2) { color: #a40e26; font-weight: 600; }
ol.stages { display: flex; flex-wrap: wrap; gap: 0.75rem; list-style: none; padding: 0; }
ol.stages li.stage {
  flex: 1 1 240px; border: 1px solid #d0d7de; border-left-width: 5px; border-radius: 6px;
  padding: 0.5rem 0.75rem;
}
ol.stages li.stage h3 { margin: 0 0 0.4rem; font-size: 1rem; }
ol.stages li.stage.running, ol.stages li.stage.soaking { border-left-color: #0969da; }
ol.stages li.stage.succeeded { border-left-color: #116329; }
ol.stages li.stage.failed, ol.stages li.stage.blocked { border-left-color: #a40e26; }
ol.stages li.stage.waitingforpromotion { border-left-color: #9a6700; }
ol.stage-chain { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap;
  gap: 0.2rem 0.5rem; }
ol.stage-chain li + li::before { content: "\\2192  "; color: #57606a; }
@media (max-width: 600px) {
  main { padding: 0.5rem; }
  dl { grid-template-columns: 1fr; }
  dt { margin-top: 0.4rem; }
}
"""
