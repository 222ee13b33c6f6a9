// intake dashboard: draws the flow charts (uPlot) in whatever htmx puts on the page, now and
// after every refresh. Everything else is server-rendered HTML.
(function () {
  "use strict";

  function chart(el) {
    if (el.dataset.drawn) { return; }
    var d;
    try { d = JSON.parse(el.dataset.chart); } catch (e) { return; }
    el.dataset.drawn = "1";
    var opts = {
      width: Math.max(320, el.clientWidth || 640),
      height: 150,
      legend: { live: true },
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max) * 1.1]; } } },
      axes: [{}, { size: 44 }],
      series: [
        {},
        { label: "band low", stroke: "rgba(86,180,233,0.6)", width: 0, points: { show: false } },
        { label: "band high", stroke: "rgba(86,180,233,0.6)", width: 0, points: { show: false } },
        { label: "expected", stroke: "#0072b2", dash: [4, 3], width: 1, points: { show: false } },
        { label: "events / 15 min", stroke: "#1b1f24", width: 1.6, points: { show: false } }
      ],
      bands: [{ series: [2, 1], fill: "rgba(86,180,233,0.28)" }]
    };
    new uPlot(opts, [d.x, d.low, d.high, d.expected, d.count], el);
  }

  function draw(root) {
    var els = (root || document).querySelectorAll("[data-chart]");
    for (var i = 0; i < els.length; i++) { chart(els[i]); }
  }

  if (window.htmx) { htmx.onLoad(draw); }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
})();
