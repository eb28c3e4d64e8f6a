// The console's actions: fetch calls to the /v1 APIs with the session cookie and its CSRF token.
// The server checks every one by role; greyed-out buttons are only a courtesy.
"use strict";

const cdp = {
  csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  },

  async api(method, path, body, headers = {}) {
    const answer = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": cdp.csrf(), ...headers },
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

  // Long work: the server runs it as a job (Prefer: respond-async) and the page polls it, showing its
  // progress in `box`; resolves with the job's result, or fails with its error in the server's words.
  async job(method, path, body, box) {
    let job = (await cdp.api(method, path, body, { Prefer: "respond-async" })).data;
    const bar = el("progress", { max: 1 });
    const note = el("span", { class: "muted" });
    box.replaceChildren(el("div", { class: "job" }, bar, note));
    for (;;) {
      if (job.total) { bar.max = job.total; bar.value = job.done; } else bar.removeAttribute("value");
      note.textContent = ` ${job.message}…`;
      if (job.state === "done") { box.replaceChildren(); return job.result; }
      if (job.state === "failed" || job.state === "interrupted") {
        box.replaceChildren();
        throw new Error(`It did not finish: ${job.error}.`);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      job = (await cdp.api("GET", `/v1/jobs/${job.id}`)).data;
    }
  },

  show(element, message) {
    if (!element) { alert(message); return; }
    element.textContent = message;
    element.hidden = !message;
  },
};

// <button data-api="POST /v1/..." data-body='{"...": ...}' data-confirm="..." data-then="reload|URL">
// <form data-api="POST /v1/..." data-then="..."> sends its fields as JSON (numbers as numbers).
// data-job="ID" on either: long work, run as a job whose progress shows in the element ID.
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

// <form data-raw="FIELD">: the field's text is the JSON body as it is.
function rawJson(field) {
  try { return JSON.parse(field.value); } catch (error) { throw new Error(`That is not valid JSON: ${error.message}`); }
}

async function runAction(element, event) {
  event.preventDefault();
  const [method, path] = element.dataset.api.split(" ");
  if (element.dataset.confirm && !confirm(element.dataset.confirm)) return;
  const out = element.querySelector(".error") || document.getElementById(element.dataset.error || "action-error");
  try {
    const body = element.dataset.raw ? rawJson(element.elements[element.dataset.raw])
      : element.tagName === "FORM" ? formBody(element)
      : (element.dataset.body ? JSON.parse(element.dataset.body) : undefined);
    const answer = element.dataset.job
      ? { data: await cdp.job(method, path, body, document.getElementById(element.dataset.job)) }
      : await cdp.api(method, path, body);
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

function scalar(text) {
  if (text === "true" || text === "false") return text === "true";
  return text !== "" && !isNaN(Number(text)) ? Number(text) : text;
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
      await cdp.job("POST", "/v1/audiences", { key, name: name || null, condition }, document.getElementById("save-progress"));
      location.href = `/ui/audiences/${encodeURIComponent(key)}`;
    } catch (error) {
      cdp.show(out, error.message);
    }
  });
}

// ---- Journey builder: the definition POST /v1/journeys takes (cdp/journeys/schemas.py), step by step ----
const FILTER_OPS = [["eq", "equals"], ["neq", "does not equal"], ["gt", ">"], ["gte", "≥"], ["lt", "<"], ["lte", "≤"],
  ["contains", "contains"], ["exists", "exists"]];
const STEP_KINDS = [["delay", "+ Delay"], ["wait_for_event", "+ Wait for event"], ["data_split", "+ Data split"],
  ["random_split", "+ Random split"], ["send", "+ Send"]];

function journeyBuilder(data) {
  const shown = document.getElementById("journey-json");
  const value = (id) => document.getElementById(id).value.trim();
  let made = 0;
  const changed = () => { shown.textContent = JSON.stringify(readJourney(), null, 2); };

  function removeButton(target) {
    const button = el("button", { type: "button", class: "remove", title: "Remove", textContent: "×" });
    button.addEventListener("click", () => { target.remove(); changed(); });
    return button;
  }

  function filterRow() {
    const box = el("div", { class: "filter" }, el("span", { textContent: "where property" }),
      el("input", { name: "property", placeholder: "price" }), select("op", FILTER_OPS, "eq"),
      el("input", { name: "value", placeholder: "value" }));
    box.append(removeButton(box));
    return box;
  }

  function readFilters(root) {
    return [...root.querySelectorAll(":scope > .filter")].map((box) => {
      const f = { property: box.querySelector("[name=property]").value.trim(), op: box.querySelector("[name=op]").value };
      if (f.op !== "exists") f.value = scalar(box.querySelector("[name=value]").value.trim());
      return f;
    }).filter((f) => f.property);
  }

  function durationFields(name, amount, unit) {
    return [el("input", { type: "number", name: `${name}_n`, min: 1, value: amount, class: "short" }),
      select(`${name}_unit`, [["minutes", "minutes"], ["hours", "hours"], ["days", "days"]], unit)];
  }

  function readDuration(row, name) {
    return { [row.querySelector(`[name=${name}_unit]`).value]: Number(row.querySelector(`[name=${name}_n]`).value) };
  }

  function stepList() {
    const box = el("div", { class: "steps" });
    const items = el("div", { class: "items" });
    const adders = el("div", { class: "adders" });
    for (const [kind, label] of STEP_KINDS) {
      const add = el("button", { type: "button", class: "light", textContent: label, "data-add-step": kind });
      add.addEventListener("click", () => { items.append(step(kind)); changed(); });
      adders.append(add);
    }
    box.append(items, adders);
    return box;
  }

  function branch(kind, ...head) {
    const box = el("div", { class: "jbranch", "data-branch": kind }, el("div", { class: "row" }, ...head), stepList());
    return box;
  }

  function randomBranch(name, percent) {
    const box = branch("random", el("b", { textContent: "Branch" }), el("input", { name: "name", value: name, class: "short" }),
      el("input", { type: "number", name: "percent", min: 1, max: 100, value: percent, class: "short" }), el("span", { textContent: "% of profiles" }));
    box.firstChild.append(removeButton(box));
    return box;
  }

  function dataBranch(name) {
    const kind = select("condition", [["trait", "trait"], ["audience", "member of audience"]], "trait");
    const trait = [el("input", { name: "trait", placeholder: "trait, e.g. plan" }), select("op", OPS, "eq"),
      el("input", { name: "value", placeholder: "value" })];
    const audience = select("audience", data.audiences.map((a) => [a, a]), data.audiences[0]);
    const toggle = () => { trait.forEach((t) => { t.hidden = kind.value !== "trait"; }); audience.hidden = kind.value !== "audience"; };
    kind.addEventListener("change", toggle);
    const box = branch("data", el("b", { textContent: "Branch" }), el("input", { name: "name", value: name, class: "short" }),
      el("span", { textContent: "when" }), kind, ...trait, audience);
    box.firstChild.append(removeButton(box));
    toggle();
    return box;
  }

  function addBranch(list, make, label) {
    const button = el("button", { type: "button", class: "light", textContent: label });
    button.addEventListener("click", () => { list.append(make(list.children.length + 1)); changed(); });
    return button;
  }

  function step(kind) {
    made += 1;
    const box = el("div", { class: `jstep ${kind}`, "data-kind": kind });
    const head = el("div", { class: "row" }, el("span", { class: "tag", textContent: kind.replace(/_/g, " ") }),
      el("input", { name: "id", value: `${kind.split("_")[0]}_${made}`, class: "short", title: "Step id (unique in the journey)" }));
    const fields = el("div", { class: "row" });
    if (kind === "delay") fields.append(el("span", { textContent: "wait" }), ...durationFields("duration", 1, "hours"));
    if (kind === "wait_for_event") {
      fields.append(el("span", { textContent: "until the profile does" }), el("input", { name: "event", placeholder: "Checkout Started" }),
        el("span", { textContent: "for at most" }), ...durationFields("timeout", 1, "hours"));
    }
    if (kind === "send") {
      fields.append(el("span", { textContent: "send the event" }), el("input", { name: "event", placeholder: "default: the journey's name" }),
        el("span", { textContent: "to" }), select("destination", data.destinations.map((d) => [String(d.id), d.name]),
          data.destinations.length ? String(data.destinations[0].id) : undefined));
      if (!data.destinations.length) fields.append(el("span", { class: "error", textContent: "No destination yet: an admin adds one under Destinations." }));
    }
    head.append(removeButton(box));
    box.append(head, fields);
    if (kind === "wait_for_event") box.append(branch("arrived", el("b", { textContent: "If it arrives" })),
      branch("timed_out", el("b", { textContent: "If it times out" })));
    if (kind === "random_split") {
      const list = el("div", { class: "branch-list" }, randomBranch("A", 50), randomBranch("B", 50));
      box.append(list, addBranch(list, (n) => randomBranch(String.fromCharCode(64 + n), 0), "+ Branch"));
    }
    if (kind === "data_split") {
      const list = el("div", { class: "branch-list" }, dataBranch("branch_1"));
      box.append(list, addBranch(list, (n) => dataBranch(`branch_${n}`), "+ Branch"),
        branch("otherwise", el("b", { textContent: "Otherwise" })));
    }
    return box;
  }

  function readSteps(list) {
    return [...list.querySelector(":scope > .items").children].map(readStep);
  }

  function inner(box, kind) {
    return readSteps(box.querySelector(`:scope > .jbranch[data-branch=${kind}] > .steps`));
  }

  function readStep(box) {
    const field = (name) => box.querySelector(`:scope > .row [name="${name}"]`);
    const kind = box.dataset.kind;
    const s = { id: field("id").value.trim(), type: kind };
    const fields = box.children[1];
    if (kind === "delay") s.duration = readDuration(fields, "duration");
    if (kind === "wait_for_event") {
      Object.assign(s, { event: field("event").value.trim(), timeout: readDuration(fields, "timeout"),
        arrived: inner(box, "arrived"), timed_out: inner(box, "timed_out") });
    }
    if (kind === "send") {
      s.destination = Number(field("destination").value);
      if (field("event").value.trim()) s.event = field("event").value.trim();
    }
    const branches = [...box.querySelectorAll(":scope > .branch-list > .jbranch")];
    const named = (b, name) => b.querySelector(`:scope > .row [name=${name}]`);
    const steps = (b) => readSteps(b.querySelector(":scope > .steps"));
    if (kind === "random_split") {
      s.branches = branches.map((b) => ({ name: named(b, "name").value.trim(), percent: Number(named(b, "percent").value), steps: steps(b) }));
    }
    if (kind === "data_split") {
      s.branches = branches.map((b) => {
        const condition = named(b, "condition").value === "audience"
          ? { type: "audience", audience: named(b, "audience").value }
          : { type: "trait", trait: named(b, "trait").value.trim(), op: named(b, "op").value };
        const v = named(b, "value").value.trim();
        if (condition.type === "trait" && condition.op !== "exists" && condition.op !== "not_exists") condition.value = scalar(v);
        return { name: named(b, "name").value.trim(), condition, steps: steps(b) };
      });
      s.otherwise = inner(box, "otherwise");
    }
    return s;
  }

  const filters = document.getElementById("entry-filters");
  const top = stepList();
  document.getElementById("journey-steps").append(top);

  function readJourney() {
    const journey = { key: value("journey-key"), entry: { event: value("entry-event"), filters: readFilters(filters) },
      holdout: Number(value("holdout") || 0) / 100, steps: readSteps(top) };
    if (value("journey-name")) journey.name = value("journey-name");
    if (value("entry-audience")) journey.entry.audience = value("entry-audience");
    if (value("reentry-key")) journey.reentry_key = value("reentry-key");
    const exits = value("exit-events").split(",").map((e) => e.trim()).filter(Boolean);
    if (exits.length) journey.exit_events = exits.map((event) => ({ event }));
    if (value("goal-event")) journey.goal = { event: value("goal-event"), within: { days: Number(value("goal-days") || 1) } };
    return journey;
  }

  document.getElementById("add-filter").addEventListener("click", () => { filters.append(filterRow()); changed(); });
  const form = document.querySelector(".journey-form");
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  document.querySelector(".save").addEventListener("input", changed);
  changed();

  document.getElementById("save-journey").addEventListener("click", async () => {
    const out = document.getElementById("journey-error");
    const journey = readJourney();
    if (!journey.key) { cdp.show(out, "Give the journey a key: letters, digits and _ (e.g. cart_recovery)."); return; }
    if (!journey.entry.event) { cdp.show(out, "Say which event makes a profile enter (step 1)."); return; }
    if (!journey.steps.length) { cdp.show(out, "Add at least one step (step 2)."); return; }
    try {
      await cdp.api("POST", "/v1/journeys", journey);
      location.href = `/ui/journeys/${encodeURIComponent(journey.key)}`;
    } catch (error) {
      cdp.show(out, `The journey was not saved: ${error.message}.`);
    }
  });
}

// ---- Audience overlap: counted after the page is shown (a join over the members takes a moment on big audiences) ----
async function overlap(section) {
  const note = section.querySelector("#overlap-note");
  const table = section.querySelector("table");
  try {
    const answer = await cdp.api("GET", `/v1/audiences/${encodeURIComponent(section.dataset.audience)}/overlap`);
    for (const o of answer.data) {
      const share = answer.size ? o.shared / answer.size : 0;
      const bar = el("span", { class: "bar", title: `${o.shared} of ${answer.size} members are also in ${o.key}` },
        el("span", { style: `width: ${(share * 100).toFixed(1)}%` }));
      table.append(el("tr", { class: "row" },
        el("td", {}, el("a", { href: `/ui/audiences/${encodeURIComponent(o.key)}`, textContent: o.name })),
        el("td", { class: "num", textContent: o.size.toLocaleString("en") }),
        el("td", { class: "num", textContent: o.shared.toLocaleString("en") }),
        el("td", {}, bar, el("span", { class: "muted", textContent: ` ${Math.round(share * 100)}%` }))));
    }
    table.hidden = !answer.data.length;
    cdp.show(note, answer.data.length ? "" : "No other audience yet.");
  } catch (error) {
    cdp.show(note, error.message);
  }
}

// ---- New prediction: the readiness check runs before anything is saved ---------------------------
function predictionForm(form) {
  const out = form.querySelector(".error");
  const report = document.getElementById("readiness");
  let checked = null;  // the body last checked, and its answer

  async function check() {
    const body = formBody(form);
    cdp.show(out, "");
    const answer = await cdp.job("POST", "/v1/predictions/readiness", body, report);
    report.replaceChildren(el("p", { class: answer.ok ? "ok" : "warn", textContent: answer.message }),
      el("table", {}, ...answer.checks.map((c) => el("tr", {},
        el("td", { class: c.passed ? "ok" : c.advisory ? "warn" : "bad", textContent: c.passed ? "ok" : c.advisory ? "warning" : "fails" }),
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
  if (document.getElementById("overlap")) overlap(document.getElementById("overlap"));
  if (document.getElementById("journey-data")) journeyBuilder(JSON.parse(document.getElementById("journey-data").textContent));
});
