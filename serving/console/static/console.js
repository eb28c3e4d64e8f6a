// The console's actions: fetch calls to the /v1 APIs with the session cookie and its CSRF token.
// The server checks every one by role; greyed-out buttons are only a courtesy.
"use strict";

const cdp = {
  csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  },

  async api(method, path, body) {
    const answer = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": cdp.csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await answer.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON: said below */ }
    if (!answer.ok) {
      const error = (data && (data.error || data)) || {};
      throw new Error(error.message || error.detail || `The server answered ${answer.status}.`);
    }
    return data;
  },

  show(element, message) {
    if (!element) { alert(message); return; }
    element.textContent = message;
    element.hidden = !message;
  },
};

// <button data-api="POST /v1/..." data-body='{"...": ...}' data-confirm="..." data-then="reload|URL">
// <form data-api="POST /v1/..." data-then="..."> sends its fields as JSON (numbers as numbers).
function formBody(form) {
  const body = {};
  for (const field of form.elements) {
    if (!field.name || field.disabled) continue;
    if (field.type === "checkbox") body[field.name] = field.checked;
    else if (field.value === "") continue;
    else if (field.type === "number") body[field.name] = Number(field.value);
    else if (field.dataset.json !== undefined) body[field.name] = JSON.parse(field.value);
    else if (field.dataset.list !== undefined) body[field.name] = field.value.split(",").map((s) => s.trim()).filter(Boolean);
    else body[field.name] = field.value;
  }
  return body;
}

async function runAction(element, event) {
  event.preventDefault();
  const [method, path] = element.dataset.api.split(" ");
  if (element.dataset.confirm && !confirm(element.dataset.confirm)) return;
  const out = element.querySelector(".error") || document.getElementById(element.dataset.error || "action-error");
  try {
    const body = element.tagName === "FORM" ? formBody(element)
      : (element.dataset.body ? JSON.parse(element.dataset.body) : undefined);
    const answer = await cdp.api(method, path, body);
    const then = element.dataset.then || "reload";
    if (then === "reload") location.reload();
    else if (then === "show") cdp.show(document.getElementById(element.dataset.result), JSON.stringify(answer.data, null, 2));
    else location.href = then.replace("{id}", answer && answer.data ? answer.data.id : "");
  } catch (error) {
    cdp.show(out, error.message);
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-api]");
  if (button && !button.disabled) runAction(button, event);
});
document.addEventListener("submit", (event) => {
  if (event.target.dataset.api) runAction(event.target, event);
});

// ---- Audience builder ------------------------------------------------------------------------
const OPS = [["eq", "equals"], ["neq", "does not equal"], ["gt", ">"], ["gte", "≥"], ["lt", "<"], ["lte", "≤"],
  ["contains", "contains"], ["not_contains", "does not contain"], ["starts_with", "starts with"],
  ["ends_with", "ends with"], ["in", "is one of (a, b)"], ["exists", "exists"], ["not_exists", "does not exist"],
  ["within_last", "date within the last (days)"], ["within_next", "date within the next (days)"],
  ["before", "date before"], ["after", "date after"]];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

function select(name, options, value) {
  const node = el("select", { name });
  for (const [v, label] of options) node.append(el("option", { value: v, textContent: label, selected: v === value }));
  return node;
}

function builder(root, data) {
  const predictions = data.predictions;
  let timer = null;
  const changed = () => { clearTimeout(timer); timer = setTimeout(preview, 350); };

  function row(kind, c = {}) {
    const box = el("div", { class: `condition ${kind}`, "data-kind": kind });
    const remove = el("button", { type: "button", class: "remove", title: "Remove", textContent: "×" });
    remove.addEventListener("click", () => { box.remove(); changed(); });
    if (kind === "prediction") {
      const top = c.bottom_percent === undefined || c.bottom_percent === null;
      const percent = c.top_percent || c.bottom_percent || 20;
      const slider = el("input", { type: "range", name: "percent", min: 1, max: 100, value: percent });
      const number = el("input", { type: "number", name: "percent_n", min: 1, max: 100, value: percent, class: "short" });
      const words = el("span", { class: "words" });
      const which = select("prediction", predictions.map((p) => [p.key, p.key]), c.prediction);
      const side = select("side", [["top", "top"], ["bottom", "bottom"]], top ? "top" : "bottom");
      const say = () => {
        const p = predictions.find((x) => x.key === which.value);
        const noun = p && p.task === "value" ? "predicted value" : (p ? `${p.key} likelihood` : "");
        words.textContent = `${side.value} ${number.value}% by ${noun}`;
      };
      slider.addEventListener("input", () => { number.value = slider.value; say(); });
      number.addEventListener("input", () => { slider.value = number.value; say(); });
      [which, side].forEach((s) => s.addEventListener("change", say));
      say();
      box.append(el("span", { class: "tag", textContent: "Predicted" }), which, side, slider, number,
        el("span", { textContent: "%" }), words);
      if (!predictions.length) box.append(el("span", { class: "error", textContent: "No prediction exists yet." }));
    } else if (kind === "trait") {
      const name = el("input", { name: "trait", placeholder: "trait name", value: c.trait || "" });
      name.setAttribute("list", "computed-traits");
      box.append(el("span", { class: "tag", textContent: "Trait" }), name,
        select("class", [["", "any kind"], ["identify", "from identify"], ["computed", "computed"], ["predicted", "predicted"]], c.class || ""),
        select("op", OPS, c.op || "eq"),
        el("input", { name: "value", placeholder: "value", value: c.value === undefined || c.value === null ? "" : (Array.isArray(c.value) ? c.value.join(", ") : c.value) }));
    } else if (kind === "event") {
      box.append(el("span", { class: "tag", textContent: "Event" }),
        select("performed", [["yes", "did"], ["no", "did not do"]], c.performed === false ? "no" : "yes"),
        el("input", { name: "event", placeholder: "event name, e.g. Order Completed", value: c.event || "" }),
        el("span", { textContent: "at least" }),
        el("input", { type: "number", name: "at_least", min: 1, value: c.at_least || 1, class: "short" }),
        el("span", { textContent: "times in the last" }),
        el("input", { type: "number", name: "within_days", min: 1, placeholder: "all time", value: c.within_days || "", class: "short" }),
        el("span", { textContent: "days" }));
    } else if (kind === "audience") {
      box.append(el("span", { class: "tag", textContent: "Audience" }),
        select("not", [["in", "member of"], ["out", "not a member of"]], c.negated ? "out" : "in"),
        select("audience", data.audiences.map((a) => [a, a]), c.audience));
      if (!data.audiences.length) box.append(el("span", { class: "muted", textContent: "No other audience yet." }));
    }
    box.append(remove);
    box.addEventListener("input", changed);
    box.addEventListener("change", changed);
    return box;
  }

  function group(type = "and", children = [], nested = false) {
    const box = el("div", { class: "group", "data-kind": "group" });
    const join = select("join", [["and", "all (AND)"], ["or", "any (OR)"]], type);
    join.addEventListener("change", changed);
    const rows = el("div", { class: "rows" });
    const adders = el("div", { class: "adders" });
    for (const [kind, label] of [["prediction", "+ Predicted trait"], ["trait", "+ Trait"], ["event", "+ Event"],
      ["audience", "+ Audience"], ["group", "+ Group"]]) {
      const add = el("button", { type: "button", class: "light", textContent: label, "data-add": kind });
      add.addEventListener("click", () => {
        rows.append(kind === "group" ? group(type === "and" ? "or" : "and", [], true) : row(kind));
        changed();
      });
      adders.append(add);
    }
    const head = el("div", { class: "group-head" }, el("span", { textContent: "Match " }), join,
      el("span", { textContent: " of these conditions" }));
    if (nested) {
      const remove = el("button", { type: "button", class: "remove", title: "Remove group", textContent: "×" });
      remove.addEventListener("click", () => { box.remove(); changed(); });
      head.append(remove);
    }
    box.append(head, rows, adders);
    for (const child of children) rows.append(fromCondition(child));
    return box;
  }

  function fromCondition(c) {
    if (c.type === "and" || c.type === "or") return group(c.type, c.conditions, true);
    if (c.type === "not" && c.condition.type === "audience") return row("audience", { ...c.condition, negated: true });
    if (c.type === "not") return group("and", [c.condition], true);  // shown as its inner condition
    return row(c.type, c);
  }

  function value(text, op) {
    if (op === "exists" || op === "not_exists") return undefined;
    if (op === "in") return text.split(",").map((s) => s.trim()).filter(Boolean).map(scalar);
    if (op === "within_last" || op === "within_next") return Number(text);
    return scalar(text);
  }

  function scalar(text) {
    if (text === "true" || text === "false") return text === "true";
    return text !== "" && !isNaN(Number(text)) ? Number(text) : text;
  }

  function read(box) {
    const field = (name) => box.querySelector(`:scope > [name="${name}"]`);
    const kind = box.dataset.kind;
    if (kind === "group") {
      const conditions = [...box.querySelector(":scope > .rows").children].map(read).filter(Boolean);
      if (!conditions.length) return null;
      const type = box.querySelector(":scope > .group-head > [name=join]").value;
      return conditions.length === 1 ? conditions[0] : { type, conditions };
    }
    if (kind === "prediction") {
      if (!field("prediction").value) return null;
      const bound = field("side").value === "top" ? "top_percent" : "bottom_percent";
      return { type: "prediction", prediction: field("prediction").value, [bound]: Number(field("percent_n").value) };
    }
    if (kind === "trait") {
      const op = field("op").value;
      const c = { type: "trait", trait: field("trait").value.trim(), op };
      if (field("class").value) c.class = field("class").value;
      const v = value(field("value").value.trim(), op);
      if (v !== undefined) c.value = v;
      return c;
    }
    if (kind === "event") {
      const c = { type: "event", at_least: Number(field("at_least").value || 1), performed: field("performed").value === "yes" };
      if (field("event").value.trim()) c.event = field("event").value.trim();
      if (field("within_days").value) c.within_days = Number(field("within_days").value);
      return c;
    }
    if (kind === "audience") {
      if (!field("audience").value) return null;
      const c = { type: "audience", audience: field("audience").value };
      return field("not").value === "out" ? { type: "not", condition: c } : c;
    }
    return null;
  }

  const size = document.getElementById("size");
  const note = document.getElementById("size-note");
  const sample = document.getElementById("sample");
  let asked = 0;

  async function preview() {
    const condition = read(top);
    if (!condition) { size.textContent = "–"; cdp.show(note, "Add a condition to see who matches."); return; }
    const mine = ++asked;
    note.textContent = "Counting…";
    try {
      const answer = (await cdp.api("POST", "/v1/audiences/preview", { condition })).data;
      if (mine !== asked) return;  // a newer question is on its way
      size.textContent = answer.size.toLocaleString("en");
      cdp.show(note, `profile${answer.size === 1 ? "" : "s"} match now`);
      sample.querySelectorAll("tr.row").forEach((r) => r.remove());
      for (const p of answer.sample) {
        const link = el("a", { href: `/ui/profiles?id=profile_id:${p.profile_id}`, textContent: p.profile_id });
        sample.append(el("tr", { class: "row" }, el("td", {}, link), el("td", { textContent: p.user_id || "" }),
          el("td", { textContent: p.email || "" })));
      }
    } catch (error) {
      if (mine !== asked) return;
      size.textContent = "?";
      cdp.show(note, error.message);
    }
  }

  const start = data.condition;
  const top = start && (start.type === "and" || start.type === "or") ? group(start.type, start.conditions)
    : group("and", start ? [start] : []);
  root.append(top, el("datalist", { id: "computed-traits" }, ...data.computed.map((n) => el("option", { value: n }))));
  if (start) preview();

  document.getElementById("save").addEventListener("click", async () => {
    const out = document.getElementById("save-error");
    const key = document.getElementById("audience-key").value.trim();
    const name = document.getElementById("audience-name").value.trim();
    const condition = read(top);
    if (!key) { cdp.show(out, "Give the audience a key: letters, digits and _ (its members get a trait by that name)."); return; }
    if (!condition) { cdp.show(out, "Add at least one condition."); return; }
    try {
      await cdp.api("POST", "/v1/audiences", { key, name: name || null, condition });
      location.href = `/ui/audiences/${encodeURIComponent(key)}`;
    } catch (error) {
      cdp.show(out, error.message);
    }
  });
}

// ---- New prediction: the readiness check runs before anything is saved ---------------------------
function predictionForm(form) {
  const out = form.querySelector(".error");
  const report = document.getElementById("readiness");
  let checked = null;  // the body last checked, and its answer

  async function check() {
    const body = formBody(form);
    cdp.show(out, "");
    report.textContent = "Checking the data (this builds the training frame)…";
    const answer = (await cdp.api("POST", "/v1/predictions/readiness", body)).data;
    report.replaceChildren(el("p", { class: answer.ok ? "ok" : "warn", textContent: answer.message }),
      el("table", {}, ...answer.checks.map((c) => el("tr", {},
        el("td", { class: c.passed ? "ok" : "bad", textContent: c.passed ? "ok" : "fails" }),
        el("td", { textContent: c.name }), el("td", { textContent: `${c.observed} (needs ${c.required})` }),
        el("td", { class: "muted", textContent: c.message })))));
    checked = { text: JSON.stringify(body), ok: answer.ok };
    form.querySelector("button[type=submit]").textContent = answer.ok ? "Create" : "Create anyway (scores by the fallback)";
    return body;
  }

  document.getElementById("check-readiness").addEventListener("click", () => check().catch((e) => cdp.show(out, e.message)));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const body = formBody(form);
      if (!checked || checked.text !== JSON.stringify(body)) {
        await check();
        if (!checked.ok) return;  // the report is on screen; a second click creates it anyway
      }
      await cdp.api("POST", "/v1/predictions", body);
      location.href = `/ui/predictions/${encodeURIComponent(body.key)}`;
    } catch (error) {
      cdp.show(out, error.message);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const data = document.getElementById("builder-data");
  if (data) builder(document.getElementById("tree"), JSON.parse(data.textContent));
  const form = document.getElementById("new-prediction");
  if (form) predictionForm(form);
});
