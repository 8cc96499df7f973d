/* The message page: poll the progress endpoint until the message is final. While it
   sends, move the bar and the counts; when it finishes (or a scheduled message starts),
   reload, so the page shows the outcome: errors by code and the affected devices. */
"use strict";
(function () {
  // Times the server wrote in its own zone, shown in the reader's too.
  document.querySelectorAll("time[data-local]").forEach((el) => {
    const when = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) return;
    // The admin's one date format, 30 Nov 2026, 05:43, in the reader's zone.
    const local = when.toLocaleString("en-GB", {
      day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
      timeZoneName: "short",
    });
    const note = document.createElement("span");
    note.className = "hd-muted hd-local-time";
    note.textContent = "(" + local + " your time)";
    el.after(" ", note);
  });

  const card = document.getElementById("hd-progress");
  if (!card || card.dataset.final === "true") return;
  const grouped = (n) => Number(n).toLocaleString("en-US");
  const field = (name) => card.querySelector('[data-field="' + name + '"]');

  function render(p) {
    card.querySelectorAll("[data-bar]").forEach((el) => { el.style.width = p[el.dataset.bar] + "%"; });
    const bar = card.querySelector(".hd-progress");
    if (bar) bar.setAttribute("aria-valuenow", Math.round(p.percent_done));
    if (field("percent_done")) field("percent_done").textContent = Math.round(p.percent_done) + " %";
    ["targeted", "sent", "validated", "failed", "pending", "opened"].forEach((name) => {
      if (field(name)) field(name).textContent = grouped(p[name]);
    });
    if (field("status_label")) field("status_label").textContent = p.status_label;
    if (field("open_rate_text")) field("open_rate_text").textContent = p.open_rate === null ? "" : p.open_rate + " %";
    renderBreakdown(p.breakdown || []);
  }

  // The "Failures by FCM error" panel, rebuilt from each answer as the counters are.
  const breakdown = document.getElementById("hd-breakdown");
  function renderBreakdown(rows) {
    if (!breakdown) return;
    const table = breakdown.querySelector("table");
    const body = table.querySelector("tbody");
    body.replaceChildren(...rows.map((row) => {
      const tr = document.createElement("tr");
      const what = document.createElement("td");
      const link = document.createElement("a");
      link.className = "hd-code";
      link.href = "?code=" + encodeURIComponent(row.code) + "#hd-failures";
      link.textContent = row.code;
      const sub = document.createElement("span");
      sub.className = "hd-sub";
      sub.textContent = row.explanation;
      what.append(link, sub);
      const count = document.createElement("td");
      count.className = "hd-num";
      count.textContent = grouped(row.count);
      tr.append(what, count);
      return tr;
    }));
    table.hidden = rows.length === 0;
    breakdown.querySelector("p").hidden = rows.length !== 0;
  }

  let delay = 1000;
  function poll() {
    fetch(card.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => {
        if (!response.ok) throw new Error(String(response.status));
        return response.json();
      })
      .then((p) => {
        render(p);
        if (p.final || p.status !== card.dataset.status && card.classList.contains("hd-waiting")) {
          card.dataset.final = String(p.final);
          setTimeout(() => window.location.reload(), p.final ? 600 : 0);
          return;
        }
        delay = p.status === "sending" ? 1000 : 5000;
        setTimeout(poll, delay);
      })
      .catch(() => { delay = Math.min(delay * 2, 30000); setTimeout(poll, delay); });
  }
  setTimeout(poll, 500);
})();
