// The segment editor's rule builder: draws the rules field's JSON document as groups of rules
// (AND inside a group, OR between groups, then "except"), writes every change back to the
// field, and asks the admin's preview view for the live size, 20 matching users and errors.
// A static file with no inline handlers, so a strict Content-Security-Policy allows it.
// The composer reuses it for a "Rules" audience: the textarea's data-preview-url names the
// preview view, and every change fires an "input" event on the textarea for the page to hear.
(function () {
  "use strict";
  const PROPS = {
    language: ["in", "not_in"], country: ["in", "not_in"], timezone: ["in", "not_in"],
    platform: ["in", "not_in"], app_user_id: ["in", "not_in"], anonymous: ["="],
    first_seen: ["within_days", "not_within_days", "before", "after"],
    last_seen: ["within_days", "not_within_days", "before", "after"],
  };
  const PARAM_OPS = ["=", "!=", ">", ">=", "<", "<=", "contains", "in", "exists", "not_exists"];
  const COUNT_OPS = ["=", ">=", "<=", "between"];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    });
    children.forEach((c) => node.append(c));
    return node;
  }
  function select(options, value, cls) {
    const s = el("select", {class: cls || ""});
    options.forEach((o) => s.append(el("option", {value: o, text: o.replace(/_/g, " ")})));
    s.value = value;
    return s;
  }
  // Typed as in the API: 50 is a number, "50" (quoted) a string, a,b a list.
  function parseScalar(text) {
    const t = text.trim();
    if (/^".*"$/.test(t)) return t.slice(1, -1);
    if (t === "true" || t === "false") return t === "true";
    if (t !== "" && !isNaN(Number(t))) return Number(t);
    return t;
  }
  function showScalar(v) {
    if (typeof v === "string" && (v !== "" && !isNaN(Number(v)) || v === "true" || v === "false")) {
      return `"${v}"`;
    }
    return v === undefined || v === null ? "" : String(v);
  }
  // "≈ 1 user · 2 devices that allow pushes", as the composer says it (messaging/admin.py).
  function reach(users, devices) {
    return `≈ ${users.toLocaleString()} user${users === 1 ? "" : "s"} · ${devices.toLocaleString()} ` +
      (devices === 1 ? "device that allows pushes" : "devices that allow pushes");
  }
  function splitList(text) { return text.split(",").map((s) => s.trim()).filter(Boolean); }

  function init() {
    document.querySelectorAll("textarea.rules-json").forEach(setUp);
  }

  function setUp(field) {
    let doc;
    try { doc = JSON.parse(field.value || "{}"); } catch (e) { return; }  // leave raw JSON to the field's error
    doc.include = doc.include || []; doc.exclude = doc.exclude || [];
    const readOnly = field.disabled || field.readOnly;
    const root = el("div", {class: "rule-builder", "data-testid": "rule-builder"});
    const status = el("div", {class: "rule-size", "aria-live": "polite"});
    const users = el("div", {class: "rule-users"});
    const showUsers = el("button", {type: "button", class: "button", text: "Show 20 matching users"});
    field.closest(".form-row, div").before(root);
    root.after(el("div", {class: "rule-preview"}, status, showUsers, users));
    field.classList.add("rule-json-hidden");

    function write() {
      field.value = JSON.stringify({version: 1, include: doc.include, exclude: doc.exclude}, null, 1);
      field.dispatchEvent(new Event("input", {bubbles: true}));
      schedule();
    }
    function ruleRow(rule, path, list, index) {
      const row = el("div", {class: "rule", "data-path": path});
      const type = select(["property", "event", "event_count"], rule.type || "property", "rule-type");
      type.addEventListener("change", () => {
        list[index] = type.value === "property" ? {type: "property", property: "language", op: "in", value: []}
          : {type: type.value, event: "", op: type.value === "event" ? "did" : ">=",
             value: type.value === "event" ? undefined : 1, params: []};
        render(); write();
      });
      row.append(type);
      if (rule.type === "property") {
        const prop = select(Object.keys(PROPS), rule.property, "rule-property");
        const op = select(PROPS[rule.property] || ["in"], rule.op, "rule-op");
        const value = el("input", {class: "rule-value", "aria-label": "value",
          value: Array.isArray(rule.value) ? rule.value.join(", ") : showScalar(rule.value)});
        prop.addEventListener("change", () => {
          rule.property = prop.value; rule.op = PROPS[prop.value][0];
          rule.value = rule.op === "in" ? [] : rule.property === "anonymous" ? true : 7;
          render(); write();
        });
        op.addEventListener("change", () => { rule.op = op.value; write(); });
        value.addEventListener("input", () => {
          rule.value = ["in", "not_in"].includes(rule.op) ? splitList(value.value) : parseScalar(value.value);
          write();
        });
        row.append(prop, op, value);
      } else {
        const name = el("input", {class: "rule-event", placeholder: "event, e.g. purchase",
                                  "aria-label": "event", value: rule.event || ""});
        name.addEventListener("input", () => { rule.event = name.value; write(); });
        const op = select(rule.type === "event" ? ["did", "did_not"] : COUNT_OPS, rule.op, "rule-op");
        op.addEventListener("change", () => { rule.op = op.value; write(); });
        row.append(name, op);
        if (rule.type === "event_count") {
          const count = el("input", {class: "rule-count", "aria-label": "count", size: 6,
            value: Array.isArray(rule.value) ? rule.value.join(", ") : showScalar(rule.value)});
          count.addEventListener("input", () => {
            rule.value = rule.op === "between" ? splitList(count.value).map(parseScalar) : parseScalar(count.value);
            write();
          });
          row.append(el("span", {text: "times"}), count);
        }
        const days = el("input", {class: "rule-days", "aria-label": "within days", size: 4,
                                  value: rule.within_days || ""});
        days.addEventListener("input", () => {
          if (days.value.trim()) rule.within_days = parseScalar(days.value); else delete rule.within_days;
          write();
        });
        row.append(el("span", {text: "in the last"}), days, el("span", {text: "days"}));
        rule.params = rule.params || [];
        const params = el("div", {class: "rule-params"});
        rule.params.forEach((p, i) => {
          const prow = el("div", {class: "rule-param", "data-path": `${path}.params[${i}]`});
          const pname = el("input", {class: "param-name", "aria-label": "param", value: p.param || ""});
          const pop = select(PARAM_OPS, p.op, "param-op");
          const pval = el("input", {class: "param-value", "aria-label": "param value",
            value: Array.isArray(p.value) ? p.value.map(showScalar).join(", ") : showScalar(p.value)});
          const drop = el("button", {type: "button", class: "rule-remove", text: "×", title: "Remove"});
          const setValue = () => {
            if (["exists", "not_exists"].includes(p.op)) delete p.value;
            else p.value = p.op === "in" ? splitList(pval.value).map(parseScalar) : parseScalar(pval.value);
          };
          pname.addEventListener("input", () => { p.param = pname.value; write(); });
          pop.addEventListener("change", () => { p.op = pop.value; setValue(); write(); });
          pval.addEventListener("input", () => { setValue(); write(); });
          drop.addEventListener("click", () => { rule.params.splice(i, 1); render(); write(); });
          prow.append(el("span", {text: "where"}), pname, pop, pval, drop);
          params.append(prow);
        });
        const addParam = el("button", {type: "button", class: "rule-add-param", text: "+ where …"});
        addParam.addEventListener("click", () => {
          rule.params.push({param: "amount", op: ">", value: 0}); render(); write();
        });
        params.append(addParam);
        row.append(params);
      }
      const remove = el("button", {type: "button", class: "rule-remove", text: "×", title: "Remove the rule"});
      remove.addEventListener("click", () => { list.splice(index, 1); render(); write(); });
      // At the end of the rule's own line, before an event rule's param filters.
      const params = row.querySelector(":scope > .rule-params");
      if (params) params.before(remove); else row.append(remove);
      row.append(el("div", {class: "rule-error", role: "alert"}));
      return row;
    }
    function side(name, title, joiner) {
      const box = el("div", {class: `rule-side rule-${name}`}, el("h3", {text: title}));
      doc[name].forEach((group, g) => {
        if (g > 0) box.append(el("div", {class: "rule-or", text: joiner}));
        const gbox = el("div", {class: "rule-group", "data-path": `${name}[${g}]`},
                        el("div", {class: "rule-group-title", text: "All of these (AND)"}));
        group.forEach((rule, r) => {
          if (r > 0) gbox.append(el("div", {class: "rule-and", text: "AND"}));
          gbox.append(ruleRow(rule, `${name}[${g}][${r}]`, group, r));
        });
        const add = el("button", {type: "button", class: "rule-add", text: "+ AND rule"});
        add.addEventListener("click", () => {
          group.push({type: "property", property: "language", op: "in", value: []}); render(); write();
        });
        gbox.append(add, el("div", {class: "rule-error", role: "alert"}));
        box.append(gbox);
      });
      const addGroup = el("button", {type: "button", class: "rule-add-group",
                                     text: name === "include" ? "+ OR group" : "+ Except group"});
      addGroup.addEventListener("click", () => {
        doc[name].push([{type: "property", property: "language", op: "in", value: []}]); render(); write();
      });
      box.append(addGroup);
      return box;
    }
    function render() {
      root.replaceChildren(
        side("include", doc.include.length ? "Include people who match" : "Include everyone (no group yet)", "OR"),
        side("exclude", "Except people who match any of", "OR"));
      if (readOnly) root.querySelectorAll("input, select, button").forEach((n) => { n.disabled = true; });
    }

    const tenantField = document.getElementById("id_tenant");
    const previewUrl = field.dataset.previewUrl ||
      location.pathname.replace(/\/audiences\/segment\/.*$/, "/audiences/segment/") + "preview/";
    const csrf = document.querySelector("input[name=csrfmiddlewaretoken]");
    let timer = null, lastUsers = [];
    function schedule() { clearTimeout(timer); timer = setTimeout(preview, 300); }
    async function preview() {
      root.querySelectorAll(".rule-error").forEach((n) => { n.textContent = ""; });
      root.querySelectorAll(".has-error").forEach((n) => n.classList.remove("has-error"));
      const tenant = tenantField ? tenantField.value : field.dataset.tenant;
      if (!tenant) { status.textContent = "Choose a tenant to see the size."; return; }
      status.textContent = "Counting …";
      const response = await fetch(previewUrl, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRFToken": csrf ? csrf.value : ""},
        body: JSON.stringify({tenant: tenant, rules: JSON.parse(field.value)}),
      });
      const body = await response.json();
      if (!body.ok) {
        status.textContent = "Not counted: a rule needs fixing.";
        const target = findError(body.path);
        target.classList.add("has-error");
        const slot = target.querySelector(":scope > .rule-error");
        if (slot) slot.textContent = body.text;
        else target.append(el("div", {class: "rule-error", role: "alert", text: body.text}));
        return;
      }
      status.textContent = reach(body.users, body.devices);
      lastUsers = body.sample;
      if (users.childElementCount) drawUsers();
    }
    // The rule (or param, or group) an error's path points into: the longest path drawn.
    function findError(path) {
      let p = path || "";
      while (p) {
        const node = root.querySelector(`[data-path="${CSS.escape(p)}"]`);
        if (node) return node;
        const shorter = p.replace(/(\.[A-Za-z_]+|\[\d+\])$/, "");
        if (shorter === p) break;
        p = shorter;
      }
      return root;
    }
    function drawUsers() {
      users.replaceChildren(el("table", {class: "rule-users-table"},
        el("tr", {}, el("th", {text: "App user"}), el("th", {text: "Language"}), el("th", {text: "Country"}),
           el("th", {text: "Last seen"})),
        ...(lastUsers || []).map((u) => el("tr", {}, el("td", {text: u.app_user_id}), el("td", {text: u.language}),
                                      el("td", {text: u.country}), el("td", {text: u.last_seen})))));
      if (!lastUsers || !lastUsers.length) users.replaceChildren(el("p", {text: "Nobody matches."}));
    }
    showUsers.addEventListener("click", () => { drawUsers(); });
    if (tenantField) tenantField.addEventListener("change", schedule);
    render(); preview();
  }
  document.addEventListener("DOMContentLoaded", init);
})();
