/* Herald's composer: live preview, audience size, validate / test without leaving the
   page, and a confirmation that states the audience before anything is sent.
   Plain JavaScript; the page works without it (the server asks to confirm instead). */
"use strict";
(function () {
  const form = document.getElementById("hd-compose");
  if (!form) return;
  const $ = (sel, root) => (root || form).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || form).querySelectorAll(sel));
  const field = (name) => form.elements.namedItem(name);
  const value = (name) => {
    const el = field(name);
    if (!el) return "";
    if (el instanceof RadioNodeList) return el.value;
    return el.value;
  };
  const tenantNames = JSON.parse(document.getElementById("hd-tenant-names").textContent);

  /* --- Preview --------------------------------------------------------------------- */

  function setText(name, text, fallback) {
    $$('[data-bind="' + name + '"]').forEach((el) => {
      el.textContent = text || fallback;
      el.classList.toggle("hd-placeholder", !text);
    });
  }

  function siteOf(link) {
    try {
      const url = new URL(link);
      return url.protocol.startsWith("http") ? url.host : url.protocol.replace(":", "") + " link";
    } catch (e) {
      return "your-site.example";
    }
  }

  function updatePreview() {
    setText("title", value("title").trim(), "Your title");
    setText("body", value("body").trim(), "Your message");
    setText("app", tenantNames[value("tenant")] || "Your app", "Your app");
    setText("site", siteOf(value("click_link").trim()), "your-site.example");
    const image = value("image_url").trim();
    $$('[data-bind="image"]').forEach((img) => {
      if (!/^https?:\/\/./.test(image)) {
        img.hidden = true;
        img.removeAttribute("src");
        return;
      }
      if (img.getAttribute("src") !== image) {
        img.onload = () => { img.hidden = false; };
        img.onerror = () => { img.hidden = true; };
        img.src = image;
      }
    });
    $("#hd-data-only-note").hidden = value("data_only") !== "1";
    $$(".hd-counter").forEach((counter) => {
      const input = document.getElementById(counter.dataset.counterFor);
      const max = Number(counter.dataset.max);
      counter.textContent = input.value.length + " / " + max;
      counter.classList.toggle("hd-bad-text", input.value.length > max);
    });
  }

  $$(".hd-preview-tabs [data-preview]").forEach((tab) => {
    tab.addEventListener("click", () => {
      $$(".hd-preview-tabs [data-preview]").forEach((t) => {
        const on = t === tab;
        t.classList.toggle("hd-on", on);
        t.setAttribute("aria-selected", on ? "true" : "false");
      });
      $$(".hd-device").forEach((d) => { d.hidden = d.dataset.platform !== tab.dataset.preview; });
    });
  });

  /* --- Sections that depend on a choice ------------------------------------------- */

  // Only the chosen tenant's segments are offered (each option names its tenant).
  function updateSegments() {
    const segment = field("segment");
    if (!segment) return;
    const tenant = value("tenant");
    Array.from(segment.options).forEach((option) => {
      if (!option.dataset.tenant) return;
      option.hidden = option.disabled = option.dataset.tenant !== tenant;
    });
    if (segment.selectedOptions.length && segment.selectedOptions[0].disabled) segment.value = "";
  }

  function updateSections() {
    updateSegments();
    const audience = value("audience");
    $$(".hd-audience-part").forEach((part) => { part.hidden = part.dataset.for !== audience; });
    const later = value("when") === "later";
    $("#hd-schedule").hidden = !later;
    $("#hd-send").textContent = later ? "Schedule…" : "Send now…";
  }

  // Default the time zone to the browser's, unless the server sent one back.
  const tz = field("schedule_tz");
  if (tz && tz.value === "UTC" && !form.querySelector(".errornote:not([hidden])")) {
    const local = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (local && Array.from(tz.options).some((o) => o.value === local)) tz.value = local;
  }

  /* --- Data pairs ------------------------------------------------------------------ */

  const pairs = $("#hd-pairs");
  $("#hd-add-pair").addEventListener("click", () => {
    const row = pairs.querySelector(".hd-pair").cloneNode(true);
    row.querySelectorAll("input").forEach((i) => { i.value = ""; });
    pairs.appendChild(row);
    row.querySelector("input").focus();
  });
  pairs.addEventListener("click", (event) => {
    const button = event.target.closest("[data-remove-pair]");
    if (!button) return;
    const row = button.closest(".hd-pair");
    if (pairs.querySelectorAll(".hd-pair").length > 1) row.remove();
    else row.querySelectorAll("input").forEach((i) => { i.value = ""; });
  });

  /* --- Talking to the server ------------------------------------------------------- */

  function post(action, url) {
    const data = new FormData(form);
    data.delete("_action");
    if (action) data.set("_action", action);
    data.set("_format", "json");
    return fetch(url || window.location.pathname, {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    }).then((response) => {
      // A 400 in JSON says what is wrong (a segment whose saved rules cannot be used): show it.
      const json = (response.headers.get("Content-Type") || "").startsWith("application/json");
      if (!response.ok && !(response.status === 400 && json)) {
        throw new Error("The server answered " + response.status + ".");
      }
      return response.json();
    });
  }

  let audienceTimer = null;
  let audienceRequest = 0;
  const sizeOut = $("#hd-audience-size");
  function updateAudience() {
    clearTimeout(audienceTimer);
    audienceTimer = setTimeout(() => {
      const mine = ++audienceRequest;
      // Never the last answer under a new choice: a segment's count takes a good part of a
      // second at a million users, and the page renders none (the dropdown names them only).
      sizeOut.textContent = "Counting …";
      sizeOut.parentElement.classList.remove("hd-warn-text");
      sizeOut.parentElement.classList.add("hd-busy");
      post(null, form.dataset.audienceUrl).then((answer) => {
        if (mine !== audienceRequest) return;
        sizeOut.textContent = answer.text;
        sizeOut.parentElement.classList.toggle("hd-warn-text", !answer.ok || answer.size === 0);
      }).catch((error) => {
        if (mine !== audienceRequest) return;
        sizeOut.textContent = "Could not count the audience: " + error.message;
        sizeOut.parentElement.classList.add("hd-warn-text");
      }).finally(() => {
        if (mine === audienceRequest) sizeOut.parentElement.classList.remove("hd-busy");
      });
    }, 250);
  }

  /* Field errors from a JSON answer, shown where the server would put them: beside the
     field (its .hd-field block), the rest in a note at the top of the form. */
  const errorNote = $("#hd-errors");
  function clearErrors() {
    $$(".hd-error").forEach((el) => el.remove());
    $$(".hd-has-error").forEach((el) => el.classList.remove("hd-has-error"));
    $$(".errornote").forEach((el) => { if (el !== errorNote) el.remove(); });
    errorNote.hidden = true;
    errorNote.replaceChildren();
  }

  function showErrors(answer) {
    clearErrors();
    const elsewhere = [];
    let first = null;
    Object.entries(answer.errors || {}).forEach(([name, messages]) => {
      const block = document.getElementById("hd-field-" + name);
      if (!block) {
        elsewhere.push(...messages);
        return;
      }
      block.classList.add("hd-has-error");
      messages.forEach((text) => {
        const p = document.createElement("p");
        p.className = "hd-error";
        p.textContent = text;
        block.appendChild(p);
      });
      const details = block.closest("details");
      if (details) details.open = true;
      first = first || block;
    });
    const summary = document.createElement("strong");
    summary.textContent = answer.summary || "Correct the marked fields first.";
    errorNote.appendChild(summary);
    elsewhere.forEach((text) => {
      errorNote.appendChild(document.createElement("br"));
      errorNote.appendChild(document.createTextNode(text));
    });
    errorNote.hidden = false;
    const target = first || errorNote;
    target.scrollIntoView({ block: "center" });
    const input = first && first.querySelector("input:not([type=hidden]), textarea, select");
    if (input) input.focus({ preventScroll: true });
  }

  const checkBox = $("#hd-check");
  function showCheck(answer) {
    checkBox.hidden = false;
    checkBox.className = "hd-check " + (answer.ok ? "hd-check-ok" : "hd-check-bad");
    checkBox.replaceChildren();
    const strong = document.createElement("strong");
    strong.textContent = answer.summary;
    checkBox.appendChild(strong);
    const lines = (answer.details || []).slice();
    Object.entries(answer.errors || {}).forEach(([name, messages]) => {
      const label = form.querySelector('label[for="id_' + name + '"], #id_' + name + "-label");
      lines.push((label ? label.firstChild.textContent.trim() + ": " : "") + messages.join(" "));
    });
    if (lines.length) {
      const list = document.createElement("ul");
      lines.forEach((line) => {
        const item = document.createElement("li");
        item.textContent = line;
        list.appendChild(item);
      });
      checkBox.appendChild(list);
    }
  }

  function busy(button, on, text) {
    button.disabled = on;
    if (on) { button.dataset.label = button.textContent; button.textContent = text; }
    else if (button.dataset.label) button.textContent = button.dataset.label;
  }

  function check(action, button, text) {
    busy(button, true, text);
    post(action).then((answer) => {
      if (answer.errors) showErrors(answer);
      else clearErrors();
      showCheck(answer);
    }).catch((error) => showCheck({ ok: false, summary: error.message }))
      .finally(() => busy(button, false));
  }

  const dialog = $("#hd-confirm-dialog");
  function confirmSend(button) {
    busy(button, true, "Checking…");
    post("send").then((answer) => {
      if (!answer.ok) {
        // Never submit again from here: that would come back to this handler, and loop.
        showErrors(answer);
        return;
      }
      clearErrors();
      $("#hd-dialog-text").textContent = answer.confirm;
      const yes = $("#hd-dialog-confirm");
      yes.hidden = answer.blocked;
      yes.textContent = value("when") === "later" ? "Yes, schedule it" : "Yes, send it";
      dialog.showModal();
      (answer.blocked ? $("#hd-dialog-cancel") : yes).focus();
    }).catch((error) => showCheck({ ok: false, summary: error.message }))
      .finally(() => busy(button, false));
  }

  $("#hd-dialog-cancel").addEventListener("click", () => dialog.close());
  $("#hd-dialog-confirm").addEventListener("click", () => {
    const action = document.createElement("input");
    action.type = "hidden";
    action.name = "_action";
    action.value = "confirm";
    form.appendChild(action);
    busy($("#hd-dialog-confirm"), true, "Sending…");
    form.submit();
  });

  form.addEventListener("submit", (event) => {
    const button = event.submitter;
    // Only these three stay on the page; "confirm" and "draft" go to the server as a plain form.
    if (!button || !["validate", "test", "send"].includes(button.value)) return;
    event.preventDefault();
    if (button.value === "validate") check("validate", button, "Validating…");
    else if (button.value === "test") check("test", button, "Sending test…");
    else if (button.value === "send") confirmSend(button);
  });

  // Enter in a one-line field must not send anything, except in the test field.
  form.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.target.tagName !== "INPUT") return;
    event.preventDefault();
    if (event.target.name === "test_to") $("#hd-test").click();
  });

  const AUDIENCE_INPUTS = ["tenant", "audience", "platforms", "countries", "languages", "app_user_ids",
                           "tokens", "topic", "condition", "segment", "rules"];
  form.addEventListener("input", (event) => {
    updatePreview();
    if (AUDIENCE_INPUTS.includes(event.target.name)) updateAudience();
  });
  form.addEventListener("change", (event) => {
    updateSections();
    updatePreview();
    if (AUDIENCE_INPUTS.includes(event.target.name)) updateAudience();
  });

  updateSections();
  updatePreview();
  updateAudience();
})();
