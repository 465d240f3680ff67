// Interlock dashboard: keeps the server-rendered page live.
//
// On every event of /api/events (server-sent events) it fetches /api/routes,
// /api/status and /api/backends and rebuilds the sections. No framework and
// no HTML strings: container names, label values and problem messages are
// untrusted text, so every one of them goes into the page through a text
// node (h() below), never through markup.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const maxFeed = 100;

  // h builds an element. attrs are fixed names chosen here (class,
  // data-*, datetime, colspan); children are nodes or plain text.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else el.setAttribute(k, String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const dash = (s) => (s ? s : "—");

  // duration formats nanoseconds like the server does.
  function duration(ns) {
    const d = Math.max(0, ns || 0);
    if (d < 1e6) return Math.round(d / 1e3) + "µs";
    if (d < 1e9) return (d / 1e6).toFixed(1) + "ms";
    if (d < 60e9) return (d / 1e9).toFixed(1) + "s";
    const s = Math.round(d / 1e9);
    if (d < 3600e9) return Math.floor(s / 60) + "m" + (s % 60) + "s";
    const m = Math.round(s / 60);
    return Math.floor(m / 60) + "h" + (m % 60) + "m";
  }
  const zeroTime = (t) => !t || t.startsWith("0001-01-01");
  function ago(t) {
    const ms = Date.now() - Date.parse(t);
    return ms < 1000 ? "just now" : duration(Math.floor(ms / 1000) * 1e9) + " ago";
  }
  const agoEl = (t) => (zeroTime(t) ? "—" : h("time", { datetime: t, "data-ago": "" }, ago(t)));
  const clock = (t) => new Date(t).toLocaleTimeString([], { hour12: false });

  function setConn(state, text) {
    const p = $("conn");
    p.dataset.state = state;
    p.textContent = text;
  }

  // ---- rendering ----------------------------------------------------

  function dl(rows) {
    return h("dl", null, rows.filter(Boolean).map(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
  }

  function state(ok, text) {
    return h("p", { class: "state", "data-ok": ok }, text);
  }

  function renderOverview(st) {
    const d = st.docker, c = st.controller, la = c.last_apply;
    const docker = h("article", { class: "card", id: "docker-card" },
      h("h2", null, "Docker"),
      state(String(d.connected), d.connected ? "connected" : "disconnected"),
      dl([
        ["Since", agoEl(d.since)],
        ["API", dash(d.api_version)],
        ["Events", d.events],
        ["Resyncs", d.resyncs],
        ["Disconnects", d.disconnects],
        d.last_error && ["Last error", h("span", { class: "msg" }, d.last_error)],
      ]));
    const applied = !zeroTime(la.at);
    const driver = h("article", { class: "card", id: "driver-card" },
      h("h2", null, "Driver ", h("code", null, c.driver)),
      state(!applied ? "none" : la.error ? "false" : "true",
        !applied ? "nothing applied yet" : la.error ? "last apply failed" : "last apply ok"),
      dl([
        ["Last apply", agoEl(applied ? la.at : "")],
        ["Took", applied ? duration(la.duration_ns) : "—"],
        ["Converged in", c.applied ? duration(c.last_convergence_ns) : "—"],
        ["Applies", c.applies + " ok, " + c.failures + " failed"],
        ["Reloads", st.reloads + (c.driver === "builtin" ? " (atomic swaps, never reloads)" : "")],
        la.error && ["Error", h("span", { class: "msg" }, la.error)],
      ]));
    const why = notReady(st);
    const table = h("article", { class: "card", id: "table-card" },
      h("h2", null, "Routing"),
      state(why || st.degraded ? "false" : "true", why ? "not ready: " + why : st.degraded ? "degraded: " + st.degraded : "ready"),
      dl([
        ["Hosts", st.hosts],
        ["Backends", st.backends],
        ["Left out", st.left_out],
        ["Table", h("code", null, c.hash ? c.hash.slice(0, 12) : "—")],
      ]));
    $("overview").replaceChildren(docker, driver, table);
  }

  // notReady mirrors the server's reasons, shortly.
  function notReady(st) {
    if (st.ready) return "";
    if (st.shutting_down) return "shutting down";
    if (!st.docker.connected) return "not connected to docker";
    if (!st.controller.applied) return "no routing table applied yet";
    return "see /readyz";
  }

  let knownBackends = null; // "host path address" keys on the page

  function healthCell(health, address) {
    const b = health && health.get(address);
    let s = "unknown", text = "—";
    if (b && b.ejected) {
      s = "ejected";
      text = "ejected · " + b.in_flight + " in flight · " + b.failures + " failed";
    } else if (b) {
      s = "live";
      text = "live · " + b.in_flight + " in flight · " + b.requests + " req";
    }
    return h("td", { "data-label": "Health", class: "health", "data-health": s }, text);
  }

  function backendRow(host, r, b, health, seen) {
    const key = host.name + " " + r.path + " " + b.address;
    seen.add(key);
    const fresh = knownBackends !== null && !knownBackends.has(key);
    return h("tr", { "data-address": b.address, class: fresh ? "fresh" : null },
      h("td", { "data-label": "Address" }, h("code", null, b.address)),
      h("td", { "data-label": "Container / task" }, dash(b.name)),
      h("td", { "data-label": "Node" }, dash(b.node)),
      healthCell(health, b.address));
  }

  function routeBlock(host, r, health, seen) {
    const backends = r.backends || [];
    const rows = backends.length === 0
      ? [h("tr", { class: "empty" }, h("td", { colspan: 4 }, "no live backend: requests get 503"))]
      : backends.map((b) => backendRow(host, r, b, health, seen));
    return h("div", { class: "route", "data-path": r.path },
      h("h4", null, h("code", null, r.path), " ", h("span", { class: "tag" }, r.balance),
        r.strip_path && [" ", h("span", { class: "tag" }, "strip")],
        r.protocol !== "http" && [" ", h("span", { class: "tag" }, r.protocol)]),
      h("table", { class: "backends stack" },
        h("thead", null, h("tr", null, ["Address", "Container / task", "Node", "Health"].map((t) => h("th", null, t)))),
        h("tbody", null, rows)));
  }

  function hostCard(host, health, seen) {
    const aliases = host.aliases || [];
    return h("article", { class: "card host", "data-host": host.name },
      h("h3", null, host.name),
      aliases.length > 0 && h("p", { class: "aliases" }, "also ", aliases.map((a, i) => [i ? ", " : "", h("span", null, a)])),
      (host.routes || []).map((r) => routeBlock(host, r, health, seen)));
  }

  function renderHosts(hosts, health) {
    const seen = new Set();
    const cards = hosts.map((host) => hostCard(host, health, seen));
    knownBackends = seen;
    $("hosts-count").textContent = hosts.length;
    $("hosts").replaceChildren(...(cards.length ? cards : [h("p", { class: "empty" }, "No host is routed yet.")]));
  }

  function renderLeftOut(problems) {
    $("left-count").textContent = problems.length;
    const rows = problems.map((p) => h("tr", { "data-id": p.id },
      h("td", { "data-label": "Kind" }, p.kind),
      h("td", { "data-label": "Name" }, p.name),
      h("td", { "data-label": "Label" }, h("code", null, dash(p.label))),
      h("td", { "data-label": "Reason" }, h("span", { class: "tag warn" }, p.reason)),
      h("td", { "data-label": "Problem", class: "msg" }, p.message)));
    $("left-out").tBodies[0].replaceChildren(...(rows.length ? rows
      : [h("tr", { class: "empty" }, h("td", { colspan: 5 }, "Nothing is left out."))]));
  }

  function addEvent(e) {
    const feed = $("feed");
    for (const empty of feed.querySelectorAll("li.empty")) empty.remove();
    feed.prepend(h("li", { "data-id": e.id, "data-level": e.level, "data-kind": e.kind },
      h("time", { datetime: e.at }, clock(e.at)), " ", h("span", { class: "msg" }, e.message)));
    while (feed.children.length > maxFeed) feed.lastElementChild.remove();
  }

  // ---- data ---------------------------------------------------------

  async function getJSON(url) {
    const res = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!res.ok) throw new Error(url + ": " + res.status);
    return res.json();
  }

  // wantHash is the table hash of the newest table event: a fetch that
  // returns another one was answered a moment before the table went live.
  let wantHash = null, running = false, again = false, early = 0;

  async function refresh() {
    if (running) { again = true; return; }
    running = true;
    try {
      const [routes, status, backends] = await Promise.all(
        ["/api/routes", "/api/status", "/api/backends"].map(getJSON));
      const health = backends.available ? new Map(backends.backends.map((b) => [b.address, b])) : null;
      renderOverview(status);
      renderHosts(routes.hosts, health);
      renderLeftOut(routes.left_out);
      if (wantHash && routes.hash !== wantHash && early < 40) {
        early++;
        await new Promise((r) => setTimeout(r, 25));
        again = true;
      } else {
        wantHash = null;
        early = 0;
      }
    } catch (err) {
      setConn("reconnecting", "API unreachable");
    } finally {
      running = false;
      if (again) { again = false; refresh(); }
    }
  }

  let lastID = Number(document.body.dataset.lastEvent || 0);

  function connect() {
    const es = new EventSource("/api/events?after=" + lastID);
    es.onopen = () => { setConn("live", "live"); refresh(); };
    es.onmessage = (msg) => {
      let e;
      try { e = JSON.parse(msg.data); } catch { return; }
      // The server sends only events after the last one we saw (or all
      // it has, when it restarted since), so there is nothing to skip.
      lastID = e.id;
      addEvent(e);
      if (e.hash) wantHash = e.hash;
      refresh();
    };
    es.onerror = () => {
      setConn("reconnecting", "reconnecting…");
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream (503): EventSource gives up; we don't.
        setTimeout(connect, 3000);
      }
    };
  }

  function tick() {
    for (const t of document.querySelectorAll("time[data-ago]")) t.textContent = ago(t.getAttribute("datetime"));
  }

  if (document.body.dataset.live === "true") connect();
  else setConn("static", "no live feed");
  setInterval(tick, 1000);
  // Counters and backend health change without events: a slow poll.
  setInterval(() => { if (document.visibilityState === "visible") refresh(); }, 5000);
})();
