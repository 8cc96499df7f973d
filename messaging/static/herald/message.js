/* The message page: poll the progress endpoint until the message is final. While it
   sends, move the bar and the counts; when it finishes (or a scheduled message starts),
   reload, so the page shows the outcome: errors by code and the affected devices. */
"use strict";
(function () {
  // Times the server wrote in its own zone, shown in the reader's too.
  document.querySelectorAll("time[data-local]").forEach((el) => {
    const when = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) return;
    const local = when.toLocaleString(undefined, {
      weekday: "long", day: "numeric", month: "long", year: "numeric", hour: "2-digit", minute: "2-digit",
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
