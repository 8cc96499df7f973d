/* The composer's variant tabs and language bar. The title, body, image and link fields show
   the chosen variant in the chosen language; the rest live here and travel to the server as
   one JSON document in the hidden content_doc field, which the server checks with the API's
   rules. Before any submit, the fields go back to variant A in the default language, which
   is what the form's own fields mean. No inline handlers (the page runs under a CSP). */
"use strict";
(function () {
  const form = document.getElementById("hd-compose");
  if (!form || !form.elements.namedItem("content_doc")) return;
  const $ = (sel) => form.querySelector(sel);
  const FIELDS = ["title", "body", "image_url", "click_link"];
  const LABELS = "ABCDE";
  const docInput = form.elements.namedItem("content_doc");
  const codes = JSON.parse(document.getElementById("hd-language-codes").textContent);
  const tenantLanguages = JSON.parse(document.getElementById("hd-tenant-languages").textContent);

  const blank = () => ({ title: "", body: "", image_url: "", click_link: "" });
  const state = { variants: [{ langs: {} }], languages: [], v: 0, lang: "", mode: "split", ab: {} };

  (function load() {
    let doc = {};
    try { doc = JSON.parse(docInput.value || "{}") || {}; } catch (e) { doc = {}; }
    Object.entries(doc.localizations || {}).forEach(([lang, c]) => { state.variants[0].langs[lang] = c; });
    (doc.variants || []).forEach((v) => {
      const langs = { "": v };
      Object.entries(v.localizations || {}).forEach(([lang, c]) => { langs[lang] = c; });
      state.variants.push({ langs });
    });
    state.languages = Object.keys(doc.localizations || {});
    state.mode = doc.variant_mode || "split";
    state.ab = doc.ab_test || {};
  })();

  function defaultLanguage() {
    const tenant = form.elements.namedItem("tenant");
    return tenantLanguages[tenant ? tenant.value : ""] || "en";
  }

  function readFields() {
    const out = {};
    FIELDS.forEach((name) => { out[name] = form.elements.namedItem(name).value; });
    return out;
  }

  function writeFields(content) {
    FIELDS.forEach((name) => { form.elements.namedItem(name).value = (content && content[name]) || ""; });
    form.dispatchEvent(new Event("input", { bubbles: true }));  // the preview and the counters follow
  }

  function slot(v, lang) {
    if (v === 0 && lang === "") return null;  // the form's own fields
    return state.variants[v].langs[lang] || (state.variants[v].langs[lang] = blank());
  }

  // Variant A in the default language stays in the form's fields; keep it aside while another shows.
  let primary = readFields();

  function save() {
    const target = slot(state.v, state.lang);
    if (target) Object.assign(target, readFields());
    else primary = readFields();
  }

  function show(v, lang) {
    save();
    state.v = v;
    state.lang = lang;
    writeFields(slot(v, lang) || primary);
    render();
  }

  function content(v, lang) {
    if (v === 0 && lang === "") return state.v === 0 && state.lang === "" ? readFields() : primary;
    if (state.v === v && state.lang === lang) return readFields();
    return state.variants[v].langs[lang] || blank();
  }

  function warnings() {
    const out = [];
    state.languages.forEach((lang) => {
      state.variants.forEach((_, v) => {
        const text = content(v, lang);
        const base = content(v, "");
        const where = lang + (state.variants.length > 1 ? " (variant " + LABELS[v] + ")" : "");
        if (!text.title.trim() || !text.body.trim()) out.push(where + " is empty");
        else if ((text.title + text.body).length > 1.5 * (base.title + base.body).length) {
          out.push(where + " is over 50 % longer than the default");
        }
      });
    });
    return out;
  }

  function button(text, data, selected) {
    const b = document.createElement("button");
    b.type = "button";
    b.setAttribute("role", "tab");
    b.setAttribute("aria-selected", selected ? "true" : "false");
    Object.entries(data).forEach(([k, val]) => { b.dataset[k] = val; });
    b.textContent = text;
    return b;
  }

  function render() {
    const vtabs = $("#hd-variant-tabs");
    vtabs.querySelectorAll("[data-variant], [data-remove-variant]").forEach((b) => b.remove());
    const addVariant = $("#hd-add-variant");
    state.variants.forEach((_, v) => {
      vtabs.insertBefore(button("Variant " + LABELS[v], { variant: v }, v === state.v), addVariant);
    });
    if (state.v > 0) {
      const remove = button("× Remove " + LABELS[state.v], { removeVariant: state.v }, false);
      remove.removeAttribute("role");
      vtabs.appendChild(remove);
    }
    addVariant.hidden = state.variants.length >= 5;

    const ltabs = $("#hd-language-tabs");
    ltabs.querySelectorAll("[data-language], [data-remove-language]").forEach((b) => b.remove());
    const picker = $("#hd-add-language");
    ltabs.insertBefore(button(defaultLanguage() + " (default)", { language: "" }, state.lang === ""), picker);
    state.languages.forEach((lang) => {
      ltabs.insertBefore(button(lang, { language: lang }, state.lang === lang), picker);
    });
    if (state.lang) {
      const remove = button("× Remove " + state.lang, { removeLanguage: state.lang }, false);
      remove.removeAttribute("role");
      ltabs.appendChild(remove);
    }
    const taken = new Set([defaultLanguage(), ...state.languages]);
    picker.replaceChildren(new Option("+ Language…", ""),
                           ...codes.filter((c) => !taken.has(c)).map((c) => new Option(c, c)));
    picker.hidden = state.languages.length >= 31;

    $("#hd-content-where").textContent = (state.variants.length > 1 ? "Variant " + LABELS[state.v] + ", " : "")
      + (state.lang || defaultLanguage() + ", the default language (and everyone without a translation)");
    const warn = warnings();
    const box = $("#hd-content-warning");
    box.hidden = !warn.length;
    box.textContent = warn.length ? "Check the translations: " + warn.join("; ") + "." : "";

    const multi = state.variants.length > 1;
    $("#hd-ab-settings").hidden = !multi;
    form.querySelectorAll('input[name="hd_variant_mode"]').forEach((r) => { r.checked = r.value === state.mode; });
    $("#hd-ab-fields").hidden = state.mode !== "ab_test";
    const fallback = $("#hd-ab-fallback");
    const chosen = fallback.value || String(state.ab.fallback_variant || 0);
    fallback.replaceChildren(...state.variants.map((_, v) => new Option(LABELS[v], String(v))));
    fallback.value = Number(chosen) < state.variants.length ? chosen : "0";
    writeDoc();
  }

  function number(id, fallback) {
    const n = parseInt($(id).value, 10);
    return Number.isNaN(n) ? fallback : n;
  }

  function writeDoc() {
    const localized = (v) => {
      const out = {};
      state.languages.forEach((lang) => { out[lang] = pick(content(v, lang)); });
      return out;
    };
    const doc = { localizations: localized(0), variant_mode: state.mode, variants: [] };
    for (let v = 1; v < state.variants.length; v++) {
      doc.variants.push({ ...pick(content(v, "")), localizations: localized(v) });
    }
    if (state.variants.length < 2) doc.variant_mode = "split";
    if (doc.variant_mode === "ab_test") {
      doc.ab_test = { test_percent: number("#hd-ab-percent", 20), wait_seconds: 60 * number("#hd-ab-wait", 60),
                      metric: $("#hd-ab-metric").value, min_opens: number("#hd-ab-min-opens", 10),
                      fallback_variant: number("#hd-ab-fallback", 0) };
    }
    docInput.value = JSON.stringify(doc);
  }

  // Only the fields the API takes, and no empty optional ones (they would fail as URLs).
  function pick(c) {
    const out = { title: c.title || "", body: c.body || "" };
    if (c.image_url) out.image_url = c.image_url;
    if (c.click_link) out.click_link = c.click_link;
    return out;
  }

  if (state.ab.test_percent) $("#hd-ab-percent").value = state.ab.test_percent;
  if (state.ab.wait_seconds) $("#hd-ab-wait").value = Math.round(state.ab.wait_seconds / 60);
  if (state.ab.min_opens !== undefined) $("#hd-ab-min-opens").value = state.ab.min_opens;

  form.addEventListener("click", (event) => {
    const b = event.target.closest("button");
    if (!b) return;
    if (b.dataset.variant !== undefined) show(Number(b.dataset.variant), state.lang);
    else if (b.dataset.language !== undefined) show(state.v, b.dataset.language);
    else if (b.id === "hd-add-variant" && state.variants.length < 5) {
      save();
      state.variants.push({ langs: { "": blank() } });
      show(state.variants.length - 1, state.lang);
    } else if (b.dataset.removeVariant !== undefined) {
      state.variants.splice(Number(b.dataset.removeVariant), 1);
      state.v = 0;
      writeFields(slot(0, state.lang) || primary);
      render();
    } else if (b.dataset.removeLanguage !== undefined) {
      const lang = b.dataset.removeLanguage;
      state.languages = state.languages.filter((l) => l !== lang);
      state.variants.forEach((v) => { delete v.langs[lang]; });
      state.lang = "";
      writeFields(slot(state.v, "") || primary);
      render();
    }
  });

  $("#hd-add-language").addEventListener("change", (event) => {
    const lang = event.target.value;
    if (!lang) return;
    state.languages.push(lang);
    show(state.v, lang);
  });

  form.addEventListener("change", (event) => {
    if (event.target.name === "hd_variant_mode") state.mode = event.target.value;
    if (event.target.name === "tenant" || event.target.name === "hd_variant_mode"
        || (event.target.id || "").startsWith("hd-ab-")) render();
  });
  form.addEventListener("input", (event) => {
    if (FIELDS.includes(event.target.name)) {
      const box = $("#hd-content-warning");
      const warn = warnings();
      box.hidden = !warn.length;
      box.textContent = warn.length ? "Check the translations: " + warn.join("; ") + "." : "";
    }
  });

  // Capture: before the composer's own submit handler reads the form.
  form.addEventListener("submit", () => {
    save();
    if (state.v !== 0 || state.lang !== "") {
      state.v = 0;
      state.lang = "";
      writeFields(primary);
    }
    render();
  }, true);

  render();
})();
