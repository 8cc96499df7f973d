/* The campaign editor: show the trigger or the schedule fields, the schedule's own fields,
   the audience's parts, and keep the plain-language summary, the audience size and the
   preview in step (summary/ answers as JSON). No inline handlers (the page runs under a CSP). */
"use strict";
(function () {
  const form = document.getElementById("hd-compose");
  if (!form || !form.classList.contains("hd-campaign-form")) return;
  const value = (name) => {
    const field = form.elements.namedItem(name);
    if (!field) return "";
    if (field instanceof RadioNodeList) return field.value;
    return field.value;
  };

  function toggle() {
    const kind = value("kind") || "triggered";
    form.querySelectorAll(".hd-kind-part").forEach((n) => { n.hidden = n.dataset.for !== kind; });
    const every = value("schedule_kind");
    form.querySelectorAll(".hd-schedule-part").forEach((n) => { n.hidden = !n.dataset.for.split(" ").includes(every); });
    const zone = form.querySelector(".hd-zone-part");
    if (zone) zone.hidden = value("zone_mode") !== "global";
    const audience = value("audience") || "all";
    form.querySelectorAll(".hd-audience-part").forEach((n) => { n.hidden = n.dataset.for !== audience; });
    const size = form.querySelector(".hd-audience-size");
    if (size) size.hidden = !size.dataset.for.split(" ").includes(audience);
  }

  function preview() {
    form.querySelectorAll("[data-bind]").forEach((n) => {
      const text = value(n.dataset.bind);
      n.textContent = text || (n.dataset.bind === "title" ? "Title" : "Body");
    });
  }

  let timer = null;
  async function summarise() {
    const body = new FormData(form);
    try {
      const response = await fetch(form.dataset.summaryUrl, { method: "POST", body, credentials: "same-origin" });
      if (!response.ok) return;
      const answer = await response.json();
      document.getElementById("hd-summary").textContent = answer.summary || "…";
      const size = document.getElementById("hd-audience-size");
      if (size) size.textContent = answer.audience || "Choose a segment to see its size";
    } catch (e) { /* offline: the summary waits for the next change */ }
  }
  function changed() {
    toggle();
    preview();
    clearTimeout(timer);
    timer = setTimeout(summarise, 250);
  }
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  document.addEventListener("DOMContentLoaded", () => { toggle(); preview(); summarise(); });
  if (document.readyState !== "loading") { toggle(); preview(); summarise(); }
})();
