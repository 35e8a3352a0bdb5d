/* Soirée's live page: draws the standings the server put in the page, then follows the
   Server-Sent Events of the election and changes only the parts of the page an event is about.
   Before publish_after the page holds no figure; at that moment it opens the stream, whose
   snapshots fill it. Names only ever go through textContent. No dependency, no build step. */
(function () {
  "use strict";

  var cfg = JSON.parse(document.getElementById("soiree-config").textContent);
  var T = cfg.strings;
  var NONE = "#d4d4d4";
  var TIE = "#555555";
  var locale = cfg.lang === "fr" ? "fr-FR" : "en-GB";
  var integer = new Intl.NumberFormat(locale);
  var decimal = new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  var signed = new Intl.NumberFormat(locale, {
    minimumFractionDigits: 2, maximumFractionDigits: 2, signDisplay: "exceptZero"
  });
  var versions = {};
  var recent = [];
  var source = null;
  var lastEventId = null;

  /* What tests (and curious readers) can look at: a page that reloaded would start again at zero. */
  var page = window.soireePage = { started: Date.now(), applied: 0, updates: 0, live: false };

  function $(id) { return document.getElementById(id); }
  function pct(value) {
    if (value === null || value === undefined) { return "—"; }
    return decimal.format(value) + (cfg.lang === "fr" ? "\u00a0%" : "%");
  }
  function count(value) { return value === null || value === undefined ? "—" : integer.format(value); }
  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, key) {
      return values[key] === undefined ? "" : String(values[key]);
    });
  }
  function candidateName(id) { return cfg.names[id] || id; }
  function colourOf(st) {
    if (!st || !st.bureaux_reported) { return NONE; }
    if (st.leader) { return cfg.colours[st.leader] || TIE; }
    return st.tied && st.tied.length ? TIE : NONE;
  }

  /* Minutes east of UTC of an ISO time's own offset ("+02:00"), or null. */
  function offsetOf(iso) {
    if (!iso) { return null; }
    if (/Z$/.test(iso)) { return 0; }
    var m = /([+-])(\d\d):?(\d\d)$/.exec(iso);
    return m ? (m[1] === "-" ? -1 : 1) * (parseInt(m[2], 10) * 60 + parseInt(m[3], 10)) : null;
  }
  /* HH:MM in the election's zone: that of publish_after, else Paris time (France's elections). */
  var paris = new Intl.DateTimeFormat("en-GB", {
    timeZone: "Europe/Paris", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"
  });
  function clock(iso, seconds) {
    if (!iso) { return "—"; }
    var at = new Date(iso);
    if (isNaN(at.getTime())) { return "—"; }
    var offset = offsetOf(cfg.publish_after);
    var text;
    if (offset === null) {
      text = paris.format(at);
    } else {
      var local = new Date(at.getTime() + offset * 60000);
      var two = function (n) { return (n < 10 ? "0" : "") + n; };
      text = two(local.getUTCHours()) + ":" + two(local.getUTCMinutes()) + ":" + two(local.getUTCSeconds());
    }
    return seconds ? text : text.slice(0, 5);
  }

  /* -- the area of the page ---------------------------------------------------------------- */

  function drawMain(st) {
    var body = document.querySelector("#candidates tbody");
    var rows = Array.prototype.slice.call(body.querySelectorAll("tr[data-candidate]"));
    var votes = st.votes || {};
    var shares = st.shares || {};
    var points = (st.change && st.change.shares_points) || {};
    rows.forEach(function (row) {
      var c = row.getAttribute("data-candidate");
      row.querySelector(".votes").textContent = count(votes[c] || 0);
      row.querySelector(".share").textContent = pct(shares[c] === undefined ? 0 : shares[c]);
      row.querySelector(".bar-fill").style.width = Math.max(0, Math.min(100, shares[c] || 0)) + "%";
      var change = row.querySelector(".change");
      change.textContent = points[c] === undefined ? "" : signed.format(points[c]) + "\u00a0" + T.points;
      row.classList.toggle("is-leader", st.leader === c);
    });
    rows.sort(function (a, b) {
      var va = votes[a.getAttribute("data-candidate")] || 0;
      var vb = votes[b.getAttribute("data-candidate")] || 0;
      return vb - va || cfg.candidates.indexOf(a.getAttribute("data-candidate")) -
        cfg.candidates.indexOf(b.getAttribute("data-candidate"));
    });
    rows.forEach(function (row) { body.appendChild(row); });

    $("f-turnout").textContent = pct(st.turnout);
    ["registered", "voters", "blank", "invalid", "expressed"].forEach(function (key) {
      $("f-" + key).textContent = count(st[key]);
    });
    var share = st.bureaux_total ? 100 * st.bureaux_reported / st.bureaux_total : 0;
    $("f-reporting").textContent = count(st.bureaux_reported) + " / " + count(st.bureaux_total) +
      " (" + pct(share) + ")";
    $("f-reporting-bar").style.width = share + "%";
    $("f-as-of").textContent = st.as_of ? fill(T.as_of, { time: clock(st.as_of, true) }) : T.no_results;

    var call = $("call");
    var text;
    if (st.decided && st.qualified && st.qualified.length) {
      text = fill(T.qualified, { who: st.qualified.map(candidateName).join(", ") });
    } else if (st.decided && st.leader) {
      text = fill(T.decided, { who: candidateName(st.leader) });
    } else if (st.tied && st.tied.length) {
      text = fill(T.tied, { who: st.tied.map(candidateName).join(", ") });
    } else {
      text = st.bureaux_reported ? T.not_decided : "";
    }
    call.textContent = text;
    call.classList.toggle("is-decided", !!st.decided);

    var reference = $("reference");
    if (st.reference && st.change) {
      var parts = [fill(T.compared, { election: st.reference.election })];
      if (st.change.turnout_points !== null && st.change.turnout_points !== undefined) {
        parts.push(T.turnout + " " + pct(st.reference.turnout) + " → " + pct(st.turnout) + " (" +
          signed.format(st.change.turnout_points) + "\u00a0" + T.points + ")");
      }
      if (st.change.voters_pct !== null && st.change.voters_pct !== undefined) {
        parts.push(T.voters + " " + count(st.reference.voters) + " → " + count(st.voters) + " (" +
          signed.format(st.change.voters_pct) + (cfg.lang === "fr" ? "\u00a0%" : "%") + ")");
      }
      reference.textContent = parts.join(" · ");
      reference.hidden = false;
    } else {
      reference.hidden = true;
    }
  }

  /* -- children: table rows, the map and the overseas tiles --------------------------------- */

  function drawRow(row, st) {
    var leader = row.querySelector(".leader");
    var colour = colourOf(st);
    leader.textContent = "";
    var swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour;
    swatch.setAttribute("aria-hidden", "true");
    leader.appendChild(swatch);
    var who = st.leader ? candidateName(st.leader) :
      (st.tied && st.tied.length ? st.tied.map(candidateName).join(" = ") : "—");
    leader.appendChild(document.createTextNode(who));
    leader.setAttribute("data-sort", who);
    var share = st.leader ? (st.shares || {})[st.leader] : null;
    set(row.querySelector(".lshare"), pct(share), share === null || share === undefined ? -1 : share);
    set(row.querySelector(".turnout"), pct(st.turnout), st.turnout === null ? -1 : st.turnout);
    set(row.querySelector(".reported"), count(st.bureaux_reported) + "/" + count(st.bureaux_total),
      st.bureaux_total ? st.bureaux_reported / st.bureaux_total : 0);
  }
  function set(cell, text, sortValue) {
    cell.textContent = text;
    cell.setAttribute("data-sort", String(sortValue));
  }

  function drawMap(st) {
    var colour = colourOf(st);
    var label = st.name + (st.leader ? " : " + candidateName(st.leader) + " " + pct((st.shares || {})[st.leader]) : "");
    var path = document.querySelector('.map-svg path[data-area="' + cssEscape(st.area) + '"]');
    if (path) {
      path.style.fill = colour;
      path.setAttribute("data-leader", st.leader || "");
      path.setAttribute("aria-label", label);
      var title = path.querySelector("title");
      if (!title) {
        title = document.createElementNS("http://www.w3.org/2000/svg", "title");
        path.appendChild(title);
      }
      title.textContent = label;
    }
    var tile = document.querySelector('.overseas a[data-area="' + cssEscape(st.area) + '"]');
    if (tile) {
      tile.querySelector(".tile-colour").style.background = colour;
      tile.setAttribute("data-leader", st.leader || "");
      tile.querySelector(".tile-leader").textContent = st.leader ?
        candidateName(st.leader) + " " + pct((st.shares || {})[st.leader]) : "";
    }
  }
  function cssEscape(text) { return window.CSS && CSS.escape ? CSS.escape(text) : text.replace(/"/g, '\\"'); }

  function apply(st) {
    if (!st || !st.level || st.area === undefined) { return; }
    var key = st.level + "\u0000" + st.area;
    if (versions[key] !== undefined && (st.version || 0) < versions[key]) { return; }
    versions[key] = st.version || 0;
    page.applied += 1;
    if (st.level === cfg.level && st.area === cfg.area) { drawMain(st); }
    if (cfg.level === "nation" && st.level === "department") { drawMap(st); }
    var table = $("table-" + st.level);
    if (table) {
      var row = table.querySelector('tbody tr[data-area="' + cssEscape(st.area) + '"]');
      if (row) { drawRow(row, st); }
    }
  }

  /* -- latest events ------------------------------------------------------------------------ */

  function remember(event) {
    if (event.level === "bureau" || event.kind === "reported" || event.kind === "corrected") { return; }
    var table = $("table-" + event.level);
    var mine = (event.level === cfg.level && event.area === cfg.area) ||
      (table && table.querySelector('tbody tr[data-area="' + cssEscape(event.area) + '"]'));
    if (!mine) { return; }
    recent.unshift(event);
    recent = recent.slice(0, 10);
    var list = $("events");
    list.textContent = "";
    recent.forEach(function (e) {
      var item = document.createElement("li");
      var time = document.createElement("time");
      time.setAttribute("datetime", e.at);
      time.textContent = clock(e.at, false);
      var link = document.createElement("a");
      link.href = "/e/" + encodeURIComponent(cfg.election) + "/" + encodeURIComponent(e.level) + "/" +
        encodeURIComponent(e.area) + cfg.suffix;
      link.textContent = e.name;
      var what = T["kind_" + e.kind] || e.kind;
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colourOf(e);
      swatch.setAttribute("aria-hidden", "true");
      item.appendChild(time);
      item.appendChild(document.createTextNode(" "));
      item.appendChild(swatch);
      item.appendChild(link);
      item.appendChild(document.createTextNode(" — " + fill(what, {
        leader: e.leader ? candidateName(e.leader) : "—",
        turnout: pct(e.turnout),
        hour: e.hour || ""
      })));
      list.appendChild(item);
    });
  }

  /* -- tables: sort, filter, show the first rows of long ones --------------------------------- */

  function limitRows(table) {
    var limit = parseInt(table.getAttribute("data-limit") || "0", 10);
    var level = table.getAttribute("data-level");
    var input = document.querySelector('input[data-filter="' + level + '"]');
    var wanted = input ? input.value.trim().toLowerCase() : "";
    var all = table.getAttribute("data-all") === "1";
    var shown = 0;
    var matching = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var match = !wanted || row.getAttribute("data-name").indexOf(wanted) >= 0 ||
        row.getAttribute("data-area").toLowerCase().indexOf(wanted) === 0;
      if (match) { matching += 1; }
      var visible = match && (all || !limit || shown < limit);
      row.hidden = !visible;
      if (visible) { shown += 1; }
    });
    var counter = document.querySelector('[data-count="' + level + '"]');
    if (counter) { counter.textContent = fill(T.shown, { shown: shown, n: matching }); }
  }

  function sortBy(table, column, button) {
    var th = button.parentNode;
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.setAttribute("aria-sort", "none");
    });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var numeric = th.classList.contains("num");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var key = function (row) {
      /* the area column sorts in the page's own order (01 … 2A 2B … 95, ZA … ZZ) */
      return column === 0 ? row.getAttribute("data-order") : row.cells[column].getAttribute("data-sort") || "";
    };
    rows.sort(function (a, b) {
      var x = key(a);
      var y = key(b);
      var order = numeric || column === 0 ? parseFloat(x) - parseFloat(y) : x.localeCompare(y, locale);
      return (ascending ? order : -order) || a.getAttribute("data-order") - b.getAttribute("data-order");
    });
    rows.forEach(function (row) { body.appendChild(row); });
    limitRows(table);
  }

  function prepareTables() {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row, i) { row.setAttribute("data-order", i); });
      table.tHead.addEventListener("click", function (event) {
        var button = event.target.closest("button[data-col]");
        if (button) { sortBy(table, parseInt(button.getAttribute("data-col"), 10), button); }
      });
      var level = table.getAttribute("data-level");
      var input = document.querySelector('input[data-filter="' + level + '"]');
      if (input) { input.addEventListener("input", function () { limitRows(table); }); }
      var all = document.querySelector('button[data-show-all="' + level + '"]');
      if (all) {
        all.addEventListener("click", function () { table.setAttribute("data-all", "1"); all.hidden = true; limitRows(table); });
      }
      limitRows(table);
    });
    Array.prototype.forEach.call(document.querySelectorAll(".map-svg path[data-area]"), function (path) {
      var go = function () {
        window.location.href = "/e/" + encodeURIComponent(cfg.election) + "/department/" +
          encodeURIComponent(path.getAttribute("data-area")) + cfg.suffix;
      };
      path.addEventListener("click", go);
      path.addEventListener("keydown", function (event) { if (event.key === "Enter") { go(); } });
    });
  }

  /* -- embargo and the stream ---------------------------------------------------------------- */

  function showEmbargo(until) {
    $("embargo-time").textContent = fill(T.embargo, { time: clock(until, false) });
    $("embargo").hidden = false;
    $("results").classList.add("is-embargoed");
  }
  function hideEmbargo() {
    $("embargo").hidden = true;
    $("results").classList.remove("is-embargoed");
  }
  function later(until, then) {
    var wait = new Date(until).getTime() - Date.now() + 200;
    window.setTimeout(then, Math.max(wait, 500));
  }

  function openStream() {
    if (source) { source.close(); }
    var query = "level=" + encodeURIComponent(cfg.stream.levels.join(","));
    if (cfg.stream.area) { query += "&area=" + encodeURIComponent(cfg.stream.area); }
    if (cfg.token) { query += "&token=" + encodeURIComponent(cfg.token); }
    var opened = false;
    source = new EventSource("/api/elections/" + encodeURIComponent(cfg.election) + "/events?" + query);
    source.addEventListener("open", function () {
      opened = true;
      page.live = true;
      hideEmbargo();
      $("connection").hidden = true;
    });
    source.addEventListener("snapshot", function (message) {
      lastEventId = message.lastEventId || lastEventId;
      apply(JSON.parse(message.data));
    });
    source.addEventListener("update", function (message) {
      lastEventId = message.lastEventId || lastEventId;
      var event = JSON.parse(message.data);
      page.updates += 1;
      apply(event);
      remember(event);
    });
    source.addEventListener("error", function () {
      page.live = false;
      if (source.readyState === EventSource.CLOSED) {
        /* refused (the embargo, seen by a clock behind the server's) or gone: ask again soon */
        source = null;
        if (!opened && cfg.publish_after && new Date(cfg.publish_after).getTime() > Date.now() - 60000) {
          showEmbargo(cfg.publish_after);
        }
        window.setTimeout(openStream, 3000);
      } else {
        $("connection").textContent = T.connection_lost;
        $("connection").hidden = false;
      }
    });
  }

  /* Events above bureau level come only when something worth announcing changes (a leader, a
     turnout step, a call): between them, ask for the standings again now and then (a 304 when
     nothing changed, the ETag doing the work). */
  var POLL_MS = 5000;
  var SMALL_LEVELS = { nation: true, region: true, department: true, circonscription: true };
  var polls = 0;
  function api(path) {
    var url = "/api/elections/" + encodeURIComponent(cfg.election) + "/results/" + path;
    return cfg.token ? url + "?token=" + encodeURIComponent(cfg.token) : url;
  }
  function refresh() {
    if (!page.live || document.hidden) { return; }
    polls += 1;
    var own = versions[cfg.level + "\u0000" + cfg.area] !== undefined;  /* else a 404 until its first */
    if (own) { get(api(encodeURIComponent(cfg.level) + "/" + encodeURIComponent(cfg.area))); }
    if (polls % 3 === 0) {
      Object.keys(cfg.children).forEach(function (level) {
        if (SMALL_LEVELS[level]) { get(api(encodeURIComponent(level))); }
      });
    }
  }
  function get(url) {
    fetch(url, { cache: "no-cache" }).then(function (response) {
      return response.ok ? response.json() : null;
    }).then(function (data) {
      if (Array.isArray(data)) { data.forEach(apply); } else if (data) { apply(data); }
    }).catch(function () { /* the stream's reconnection says so */ });
  }
  window.setInterval(refresh, POLL_MS);

  /* a stream left open would hold one of the browser's six connections to the server */
  window.addEventListener("pagehide", function () {
    if (source) { source.close(); source = null; }
  });
  window.addEventListener("pageshow", function (event) {
    var waiting = cfg.embargoed && !cfg.token && new Date(cfg.publish_after).getTime() > Date.now();
    if (event.persisted && !source && !waiting) { openStream(); }
  });

  prepareTables();
  if (cfg.initial) { cfg.initial.forEach(apply); }
  if (cfg.embargoed && !cfg.token) {
    showEmbargo(cfg.publish_after);
    later(cfg.publish_after, openStream);
  } else {
    openStream();
  }
})();
