// Parachute console: the live decision stream, the health charts'
// refresh and the copy buttons. No framework, no inline code; every
// value from the server is set as text, never parsed as HTML.
(function () {
  "use strict";

  function el(tag, text, attrs) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (attrs) { Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); }); }
    return e;
  }

  function fmtTime(s) {
    var d = new Date(s);
    return isNaN(d) ? s : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function liveRow(r) {
    var tr = el("tr", null, {
      "data-seq": r.seq, "data-kind": r.kind, "data-allow": r.allow,
      "data-reason": (r.reasons || []).join(","), "data-turn": r.turn || ""
    });
    tr.className = "new";
    tr.appendChild(el("td", fmtTime(r.time), { "class": "t" }));
    tr.appendChild(el("td", r.kind));
    var dec = el("td");
    if (r.allow === "true") { dec.appendChild(el("span", "allow", { "class": "allow" })); }
    if (r.allow === "false") { dec.appendChild(el("span", "deny", { "class": "deny" })); }
    tr.appendChild(dec);
    tr.appendChild(el("td", (r.reasons || []).join(", ")));
    tr.appendChild(el("td", r.connector));
    tr.appendChild(el("td", r.user));
    tr.appendChild(el("td", r.what, { "class": "what" }));
    var turn = el("td");
    if (r.turn) {
      turn.appendChild(el("a", "trace", { "data-trace": "", href: "/console/trace/" + encodeURIComponent(r.turn) }));
    }
    tr.appendChild(turn);
    var pg = el("td");
    if (r.playground && r.from) {
      pg.appendChild(el("a", "playground", { "data-playground": "", href: "/console/policy?from=" + encodeURIComponent(r.from) }));
    }
    tr.appendChild(pg);
    return tr;
  }

  function startLive(table) {
    var body = document.getElementById("live-rows");
    var status = document.getElementById("live-status");
    var ids = ["connector", "identity", "kind", "allow", "reason"];
    var es = null;
    function connect() {
      var q = new URLSearchParams();
      ids.forEach(function (k) {
        var v = document.getElementById("f-" + k).value.trim();
        if (v) { q.set(k, v); }
      });
      var qs = q.toString();
      es = new EventSource(table.getAttribute("data-src") + (qs ? "?" + qs : ""));
      es.addEventListener("open", function () { status.textContent = "Connected: new decisions appear at the top."; });
      es.addEventListener("error", function () { status.textContent = "Disconnected; reconnecting…"; });
      es.addEventListener("failed", function (ev) { status.textContent = JSON.parse(ev.data); es.close(); });
      es.addEventListener("record", function (ev) {
        var r = JSON.parse(ev.data);
        body.insertBefore(liveRow(r), body.firstChild);
        while (body.children.length > 500) { body.removeChild(body.lastChild); }
      });
    }
    // The filter form is a plain GET of this page: the server renders it
    // with the filters, and the stream opens with them.
    connect();
  }

  function startCharts(box) {
    var url = box.getAttribute("data-refresh");
    window.setInterval(function () {
      if (document.hidden) { return; }
      fetch(url, { credentials: "same-origin" }).then(function (res) {
        if (!res.ok || res.redirected) { return null; }
        return res.text();
      }).then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString("<div>" + html + "</div>", "text/html");
        var fresh = doc.body.firstChild;
        box.replaceChildren.apply(box, Array.prototype.slice.call(fresh.childNodes).map(function (n) { return document.importNode(n, true); }));
      }).catch(function () {});
    }, 3000);
  }

  document.addEventListener("click", function (ev) {
    var b = ev.target.closest("[data-copy]");
    if (!b) { return; }
    var input = document.getElementById(b.getAttribute("data-copy"));
    input.select();
    if (navigator.clipboard) { navigator.clipboard.writeText(input.value).catch(function () {}); }
    b.textContent = "Copied";
  });

  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("live");
    if (live) { startLive(live); }
    var charts = document.getElementById("charts");
    if (charts) { startCharts(charts); }
  });
}());
