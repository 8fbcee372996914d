// zlt dashboard: live updates over the job event streams (GET /v1/jobs/{id}/events, Server-Sent Events). The pages
// are complete without this file; it only keeps them current. No framework, no build step.
"use strict";
(function () {
  var MAX_STREAMS = 4; // browsers allow ~6 connections per host over HTTP/1.1; leave room for pages and images

  function num(v, digits) {
    return (typeof v === "number" && isFinite(v)) ? String(Number(v.toPrecision(digits || 4))) : "";
  }
  // The rules of zlt/core/units.py (rate_text, duration), so a live update reads like the server's render.
  function rate(v) {
    if (typeof v !== "number" || !isFinite(v) || v <= 0) return "";
    return v >= 1 ? Number(v.toPrecision(3)) + " it/s" : Number((1 / v).toPrecision(3)) + " s/it";
  }
  function duration(s) {
    if (typeof s !== "number") return "";
    s = Math.round(s);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  }
  function stream(jobId, after, onEvent, onEnd) {
    var es = new EventSource("/v1/jobs/" + encodeURIComponent(jobId) + "/events?after=" + (after || 0));
    ["phase", "progress", "checkpoint", "sample", "resumed", "warning", "oom", "error", "evaluation", "finished"]
      .forEach(function (t) {
        es.addEventListener(t, function (m) {
          var ev; try { ev = JSON.parse(m.data); } catch (e) { return; }
          onEvent(ev);
        });
      });
    es.onerror = function () {
      // The server closes the stream when the job ended; EventSource would reconnect and replay nothing.
      if (es.readyState === EventSource.CLOSED || es.readyState === EventSource.CONNECTING) {
        es.close();
        if (onEnd) onEnd();
      }
    };
    return es;
  }
  function setText(root, sel, text) {
    var el = root.querySelector(sel);
    if (el) el.textContent = text;
  }

  // ---- Jobs page -------------------------------------------------------------------------------------------------
  function jobsPage() {
    var table = document.getElementById("jobs");
    if (!table) return;
    var streams = {};
    var refreshTimer = null;

    function refresh() {
      refreshTimer = null;
      fetch(table.dataset.rows, {credentials: "same-origin"}).then(function (r) {
        if (r.redirected || !r.ok) return null;
        return r.text();
      }).then(function (html) {
        if (html === null || html === undefined) return;
        var tbody = document.getElementById("job-rows");
        var tmp = document.createElement("tbody");
        tmp.innerHTML = html;
        tbody.replaceWith(tmp);
        tmp.id = "job-rows";
        attach();
      }).catch(function () {});
    }
    function soon(ms) {
      if (!refreshTimer) refreshTimer = setTimeout(refresh, ms || 500);
    }
    function row(id) { return document.querySelector('#job-rows tr[data-job="' + CSS.escape(id) + '"]'); }
    function onEvent(ev) {
      var tr = row(ev.job_id);
      if (!tr) return;
      if (ev.type === "progress") {
        var pct = ev.total ? Math.min(100, 100 * ev.step / ev.total) : 0;
        var bar = tr.querySelector('[data-f="bar"]');
        if (bar) bar.value = pct;
        setText(tr, '[data-f="steps"]', ev.step + "/" + ev.total);
        setText(tr, '[data-f="loss"]', num(ev.loss));
        setText(tr, '[data-f="it_s"]', rate(ev.it_s));
        setText(tr, '[data-f="eta"]', duration(ev.eta_s));
        var st = tr.querySelector('[data-f="state"]');
        if (st && st.textContent !== "running") soon(300);
      } else if (ev.type === "phase") {
        setText(tr, '[data-f="phase"]', ev.phase || "");
        soon(1000);
      } else if (ev.type === "finished") {
        soon(300);
      }
    }
    function attach() {
      var rows = document.querySelectorAll('#job-rows tr[data-active="1"]');
      var live = {};
      for (var i = 0; i < rows.length; i++) {
        var id = rows[i].dataset.job;
        live[id] = true;
        if (!streams[id] && Object.keys(streams).length < MAX_STREAMS) {
          (function (jid, seq) {
            streams[jid] = stream(jid, seq, onEvent, function () { delete streams[jid]; soon(300); });
          })(id, rows[i].dataset.seq);
        }
      }
      Object.keys(streams).forEach(function (id) {
        if (!live[id]) { streams[id].close(); delete streams[id]; }
      });
    }
    attach();
    setInterval(refresh, 5000); // new jobs and state changes of jobs without a stream
  }

  // ---- Job page --------------------------------------------------------------------------------------------------
  function jobPage() {
    var root = document.getElementById("job");
    if (!root) return;
    var id = root.dataset.job, dir = root.dataset.dir;
    var chartTimer = null, softTimer = null;
    var terminal = {succeeded: 1, failed: 1, cancelled: 1};
    if (terminal[root.dataset.state]) return;

    function chart() {
      chartTimer = null;
      var fig = document.getElementById("chart");
      if (!fig) return;
      fetch("/ui/jobs/" + encodeURIComponent(id) + "/chart", {credentials: "same-origin"})
        .then(function (r) { return r.ok && !r.redirected ? r.text() : null; })
        .then(function (html) { if (html) fig.innerHTML = html; }).catch(function () {});
    }
    // Re-read the server's page and swap the parts that change with the state (summary, actions, history, log).
    function soft() {
      softTimer = null;
      fetch(location.pathname, {credentials: "same-origin"})
        .then(function (r) { return r.ok && !r.redirected ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          ["summary", "history", "log", "evals"].forEach(function (part) {
            var fresh = doc.getElementById(part), old = document.getElementById(part);
            if (fresh && old) old.replaceWith(fresh);
          });
          var st = doc.getElementById("state");
          if (st) { root.dataset.state = st.textContent; document.title = document.title.replace(/\([a-z]+\)/, "(" + st.textContent + ")"); }
        }).catch(function () {});
    }
    function addEvent(ev, line) {
      var ol = document.getElementById("events");
      if (!ol) return;
      var li = document.createElement("li");
      li.dataset.seq = ev.seq;
      var t = document.createElement("span");
      t.className = "t t-" + ev.type;
      t.textContent = ev.type;
      li.appendChild(t);
      li.appendChild(document.createTextNode(" " + line));
      ol.appendChild(li);
      ol.scrollTop = ol.scrollHeight;
    }
    function addSample(ev) {
      if (!ev.path || !dir || ev.path.indexOf(dir + "/") !== 0) return;
      var rel = ev.path.slice(dir.length + 1);
      var url = "/ui/jobs/" + encodeURIComponent(id) + "/files/" + rel.split("/").map(encodeURIComponent).join("/");
      var gallery = document.getElementById("samples");
      if (!gallery) return;
      var none = document.getElementById("no-samples");
      if (none) none.remove();
      var fig = gallery.querySelector('figure[data-step="' + ev.step + '"]');
      if (!fig) {
        fig = document.createElement("figure");
        fig.className = "step";
        fig.dataset.step = ev.step;
        var cap = document.createElement("figcaption");
        cap.textContent = "step " + ev.step;
        fig.appendChild(cap);
        gallery.appendChild(fig);
      }
      var a = document.createElement("a");
      a.href = url;
      var img = document.createElement("img");
      img.src = url; img.loading = "lazy"; img.width = 160; img.height = 160;
      img.alt = "sample " + rel.split("/").pop() + " at step " + ev.step;
      a.appendChild(img);
      fig.appendChild(a);
    }
    function line(ev) {
      if (ev.type === "progress") return "step " + ev.step + "/" + ev.total + (typeof ev.loss === "number" ? " loss " + ev.loss.toFixed(4) : "");
      if (ev.type === "phase") return (ev.phase || "") + (ev.message ? ": " + ev.message : "");
      if (ev.type === "checkpoint" || ev.type === "sample") {
        var name = String(ev.path || "").split("/").pop();
        return typeof ev.step === "number" ? "step " + ev.step + ": " + name : name;
      }
      if (ev.type === "finished") return (ev.status || "") + (ev.message ? ": " + ev.message : "");
      return ev.message || ev.cause || "";
    }
    function onEvent(ev) {
      addEvent(ev, line(ev));
      if (ev.type === "progress") {
        var bar = document.getElementById("bar");
        if (bar && ev.total) bar.value = Math.min(100, 100 * ev.step / ev.total);
        setText(document, "#steps", "step " + ev.step + "/" + ev.total);
        setText(document, "#loss", num(ev.loss));
        setText(document, "#it_s", rate(ev.it_s));
        setText(document, "#eta", duration(ev.eta_s));
        var st = document.getElementById("state");
        if (st && st.textContent !== "running" && !softTimer) softTimer = setTimeout(soft, 300);
        if (!chartTimer) chartTimer = setTimeout(chart, 1500);
      } else if (ev.type === "phase") {
        setText(document, "#phase", ev.phase || "");
        if (!softTimer) softTimer = setTimeout(soft, 800);
      } else if (ev.type === "sample") {
        addSample(ev);
      } else if (ev.type === "evaluation") {
        var none = document.getElementById("no-evals");
        if (none) none.remove();
        if (!softTimer) softTimer = setTimeout(soft, 300);
      } else if (ev.type === "finished") {
        var s = document.getElementById("state");
        if (s) { s.textContent = ev.status; s.className = "badge s-" + ev.status; }
        chart();
        soft();
      }
    }
    stream(id, root.dataset.seq, onEvent, function () { soft(); chart(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    ["events", "log"].forEach(function (id) { // the newest lines are at the bottom
      var el = document.getElementById(id);
      if (el) el.scrollTop = el.scrollHeight;
    });
    jobsPage();
    jobPage();
  });
})();
