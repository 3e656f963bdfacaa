// fusionrec dashboard: polls /api/dashboard and draws line charts on <canvas>. Hand-written, no dependencies.
"use strict";
(function () {
  var PALETTE = ["#5ab0ff", "#ffb347", "#7bd88f", "#ff6b6b", "#c792ea", "#4dd0e1", "#f78c6c", "#c3e88d", "#ffcb6b", "#89ddff"];
  var REFRESH_MS = 2000;

  function niceStep(span, ticks) {
    var raw = span / Math.max(1, ticks), mag = Math.pow(10, Math.floor(Math.log10(raw))), r = raw / mag;
    return (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
  }
  function fmt(v) {
    if (v === null || v === undefined || isNaN(v)) return "–";
    if (Number.isInteger(v) && Math.abs(v) < 1e4) return String(v);
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (a >= 100) return Math.round(v).toString();
    if (a >= 10) return v.toFixed(1);
    return (Math.round(v * 100) / 100).toString();
  }
  function clock(t) {
    var d = new Date(t * 1000);
    return ("0" + d.getHours()).slice(-2) + ":" + ("0" + d.getMinutes()).slice(-2) + ":" + ("0" + d.getSeconds()).slice(-2);
  }

  // Series names without the prefix they all share up to a dot ("t1.events.shop[0]" -> "events.shop[0]").
  function shortLabels(names) {
    if (names.length < 2) return names.slice();
    var p = names[0];
    names.forEach(function (n) { while (n.indexOf(p) !== 0) p = p.slice(0, -1); });
    var cut = p.lastIndexOf(".") + 1;
    return names.map(function (n) { return n.slice(cut); });
  }

  // Draw named series (name -> values aligned with t) on a canvas; records what it drew in data-* attributes.
  function drawChart(canvas, t, series, opts) {
    opts = opts || {};
    var ratio = window.devicePixelRatio || 1, w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    canvas.width = w * ratio; canvas.height = h * ratio;
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    var names = Object.keys(series), left = 56, right = 10, top = 10;
    ctx.font = "11px system-ui, sans-serif";
    var labels = shortLabels(names), slots = [], lx0 = left, ly0 = 0;
    labels.forEach(function (label) {  // legend entries flow left to right, wrapping
      var lw = 14 + ctx.measureText(label + " 00000").width + 14;
      if (lx0 + lw > w - right && lx0 > left) { lx0 = left; ly0 += 18; }
      slots.push([lx0, ly0]); lx0 += lw;
    });
    var legendH = names.length ? ly0 + 18 : 0, bottom = 26 + legendH;
    var pw = w - left - right, ph = h - top - bottom;
    var max = 0, points = 0, t0 = t.length ? t[0] : 0, t1 = t.length ? t[t.length - 1] : 1;
    names.forEach(function (n) { series[n].forEach(function (v) { if (v !== null && !isNaN(v)) { points++; if (v > max) max = v; } }); });
    if (t1 - t0 < 60) t0 = t1 - 60;
    var step = niceStep(max > 0 ? max : 1, 4), ymax = Math.max(step, Math.ceil((max || 1) / step) * step);
    ctx.font = "11px system-ui, sans-serif"; ctx.strokeStyle = "#2a3140"; ctx.fillStyle = "#7f8ea3"; ctx.lineWidth = 1;
    for (var y = 0; y <= ymax + 1e-9; y += step) {
      var py = top + ph - (y / ymax) * ph;
      ctx.beginPath(); ctx.moveTo(left, py); ctx.lineTo(left + pw, py); ctx.stroke();
      ctx.textAlign = "right"; ctx.fillText(fmt(y) + (opts.unit || ""), left - 6, py + 4);
    }
    ctx.textAlign = "center";
    for (var k = 0; k <= 4; k++) {
      var tx = t0 + (t1 - t0) * k / 4;
      ctx.fillText(clock(tx), left + pw * k / 4, top + ph + 14);
    }
    function px(tt) { return left + ((tt - t0) / Math.max(1e-9, t1 - t0)) * pw; }
    function py2(v) { return top + ph - (v / ymax) * ph; }
    names.forEach(function (n, i) {
      var color = (opts.colors && opts.colors[n]) || PALETTE[i % PALETTE.length], vals = series[n], open = false;
      ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
      for (var j = 0; j < vals.length; j++) {
        var v = vals[j];
        if (v === null || v === undefined || isNaN(v)) { open = false; continue; }
        if (!open) { ctx.moveTo(px(t[j]), py2(v)); open = true; } else ctx.lineTo(px(t[j]), py2(v));
      }
      ctx.stroke();
      var lx = slots[i][0], ly = top + ph + 34 + slots[i][1];
      ctx.fillStyle = color; ctx.fillRect(lx, ly - 8, 10, 10);
      ctx.fillStyle = "#aab4c3"; ctx.textAlign = "left";
      var last = null;
      for (var m = vals.length - 1; m >= 0; m--) if (vals[m] !== null && !isNaN(vals[m])) { last = vals[m]; break; }
      ctx.fillText(labels[i] + " " + fmt(last), lx + 14, ly + 1);
    });
    if (!points) { ctx.fillStyle = "#5f6b7d"; ctx.textAlign = "center"; ctx.fillText("no data yet", left + pw / 2, top + ph / 2); }
    canvas.dataset.series = String(names.length);
    canvas.dataset.points = String(points);
    canvas.dataset.max = String(max);
  }

  function setTile(id, text, cls) {
    var el = document.getElementById(id);
    el.textContent = text;
    el.className = "value" + (el.classList.contains("small") || id === "tile-model" ? " small" : "") + (cls ? " " + cls : "");
  }
  function lastOf(vals) {
    for (var i = (vals || []).length - 1; i >= 0; i--) if (vals[i] !== null && !isNaN(vals[i])) return vals[i];
    return null;
  }
  function fillTable(id, rows) {
    var body = document.querySelector("#" + id + " tbody");
    body.innerHTML = "";
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      r.forEach(function (c, i) { var td = document.createElement("td"); td.textContent = c; if (i === r.length - 1) td.className = "num"; tr.appendChild(td); });
      body.appendChild(tr);
    });
  }

  function render(d) {
    var L = d.latest || {};
    var eps = 0, any = false;
    Object.keys(d.events_per_s).forEach(function (p) { var v = lastOf(d.events_per_s[p]); if (v !== null) { eps += v; any = true; } });
    var p99 = lastOf(d.latency_ms.p99);
    setTile("tile-lag", fmt(L.lag_total), L.lag_total > 1000 ? "bad" : L.lag_total > 0 ? "warn" : "ok");
    setTile("tile-eps", any ? fmt(eps) : "–");
    setTile("tile-p99", p99 === null ? "–" : fmt(p99) + " ms", p99 > 1000 ? "bad" : p99 > 500 ? "warn" : "ok");
    setTile("tile-rps", fmt(lastOf(d.recs_per_s)));
    var dlq = 0; Object.keys(L.dead_letters_total || {}).forEach(function (r) { dlq += L.dead_letters_total[r]; });
    setTile("tile-dlq", fmt(dlq), dlq > 0 ? "warn" : "ok");
    setTile("tile-recall", L.online_recall_at_10 === null || L.online_recall_at_10 === undefined ? "–" : (L.online_recall_at_10 * 100).toFixed(1) + " %");
    setTile("tile-items", fmt(L.index_items));
    setTile("tile-ckpt", L.checkpoint_age_s === null || L.checkpoint_age_s === undefined ? "none yet" : fmt(L.checkpoint_age_s) + " s");
    var versions = L.model_versions || [];
    if (L.workers === 0) setTile("tile-model", "no worker reachable", "bad");
    else setTile("tile-model", versions.join(", ") || "–", versions.length > 1 ? "warn" : "");

    drawChart(document.getElementById("chart-lag"), d.t, d.lag);
    var thr = {}; Object.keys(d.events_per_s).forEach(function (p) { thr["events " + p] = d.events_per_s[p]; });
    thr["recommendations"] = d.recs_per_s;
    drawChart(document.getElementById("chart-throughput"), d.t, thr, { unit: "/s" });
    drawChart(document.getElementById("chart-latency"), d.t, d.latency_ms, { unit: " ms", colors: { p50: "#7bd88f", p95: "#ffb347", p99: "#ff6b6b" } });
    drawChart(document.getElementById("chart-dlq"), d.t, d.dead_letters_per_s, { unit: "/s" });

    fillTable("lag-table", Object.keys(d.lag).map(function (k) {
      var m = /^(.*)\[(.*)\]$/.exec(k) || [k, k, ""];
      return [m[1], m[2], fmt(lastOf(d.lag[k]))];
    }));
    fillTable("dlq-table", Object.keys(L.dead_letters_total || {}).map(function (r) { return [r, fmt(L.dead_letters_total[r])]; }));
    fillTable("timing-table", [
      ["recommend micro-batch (events, mean)", fmt(L.batch_size_mean)],
      ["encoder batch (ms, mean)", fmt(L.encoder_batch_ms_mean)],
      ["rank micro-batch (ms, mean)", fmt(L.rank_batch_ms_mean)],
      ["index vector lookup (ms, mean)", fmt(L.index_lookup_ms_mean)],
      ["latency p99 since start (ms)", fmt(L.latency_p99_ms_all_time)],
      ["workers scraped", fmt(L.workers)]
    ]);
    var st = document.getElementById("status");
    st.textContent = "updated " + (L.t ? clock(L.t) : "–") + " · " + d.t.length + " readings";
    st.className = "status";
    document.body.dataset.readings = String(d.t.length);
  }

  function refresh() {
    fetch("/api/dashboard", { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(render)
      .catch(function (e) { var st = document.getElementById("status"); st.textContent = "error: " + e.message; st.className = "status bad"; })
      .then(function () { setTimeout(refresh, REFRESH_MS); });
  }
  window.fusionrecDashboard = { drawChart: drawChart, render: render };
  refresh();
})();
