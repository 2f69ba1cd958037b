// The operator console: polls GET /admin/console/state every 2 s and renders four panels;
// its buttons call the service's own APIs with the session cookies. No framework: the DOM
// is built with createElement and textContent (nothing from the server becomes HTML).
"use strict";

const STATE_URL = "/admin/console/state";
const LOGIN_URL = "/admin/console/login";
const POLL_MS = 2000;

let timer = null;
let polling = false;
// A poll asked for while one runs (after a button's call) follows it at once.
let again = false;
// Per panel, the data last rendered: a panel is rebuilt only when its data changed, so
// a button is not replaced under the pointer between two polls.
const rendered = {};

// ---- small DOM helpers ----------------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (key === "class") {
      node.className = value;
    } else if (key === "text") {
      node.textContent = value;
    } else if (key.startsWith("on")) {
      node.addEventListener(key.slice(2), value);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) {
      continue;
    }
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function table(headers, rows, empty) {
  if (rows.length === 0) {
    return el("p", { class: "muted", text: empty });
  }
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows));
}

function replace(id, ...nodes) {
  document.getElementById(id).replaceChildren(...nodes);
}

function badge(text, kind) {
  return el("span", { class: "badge " + (kind || "") }, text);
}

function dash(value) {
  return value === undefined || value === null || value === "" ? "—" : value;
}

function when(rfc3339) {
  if (!rfc3339) {
    return "—";
  }
  const date = new Date(rfc3339);
  if (Number.isNaN(date.getTime())) {
    return rfc3339;
  }
  return el("time", { datetime: rfc3339, title: rfc3339 }, date.toLocaleString());
}

function duration(ms) {
  if (ms === undefined || ms === null) {
    return "—";
  }
  if (ms < 1000) {
    return ms + " ms";
  }
  if (ms < 60000) {
    return (ms / 1000).toFixed(1) + " s";
  }
  return (ms / 60000).toFixed(1) + " min";
}

// Minor units in the currency's own number of decimals (2 for EUR, 0 for JPY).
function amount(minor, currency) {
  try {
    const format = new Intl.NumberFormat(undefined, { style: "currency", currency });
    return format.format(minor / 10 ** format.resolvedOptions().maximumFractionDigits);
  } catch (_) {
    return minor + " " + currency + " (minor units)";
  }
}

function short(id) {
  return el("code", { title: id }, id.length > 13 ? id.slice(0, 8) + "…" + id.slice(-4) : id);
}

// ---- notices and API calls -------------------------------------------------------------

function notify(text, isError) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.className = "notice " + (isError ? "error" : "ok");
  box.hidden = false;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error) {
      return body.error.code + ": " + body.error.message;
    }
  } catch (_) {
    // not JSON: fall through
  }
  return "HTTP " + response.status;
}

// A session whose access token expired is renewed once with the refresh cookie.
async function refreshSession() {
  try {
    const response = await fetch("/auth/refresh", { method: "POST", credentials: "same-origin" });
    return response.ok;
  } catch (_) {
    return false;
  }
}

async function call(method, url, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response = await fetch(url, init);
  if (response.status === 401 && await refreshSession()) {
    response = await fetch(url, init);
  }
  if (response.status === 401) {
    window.location.assign(LOGIN_URL);
  }
  return response;
}

async function act(button, url, body, done) {
  button.disabled = true;
  try {
    const response = await call("POST", url, body);
    if (response.ok) {
      notify(done(await response.json()), false);
    } else {
      notify(await errorText(response), true);
    }
  } catch (e) {
    notify("the service did not answer: " + e.message, true);
  } finally {
    button.disabled = false;
  }
  poll();
}

function tenantParam() {
  return new URLSearchParams(window.location.search).get("tenant") || "";
}

// ---- panels -----------------------------------------------------------------------------

function stat(label, value) {
  return el("div", { class: "stat" }, el("span", { class: "label", text: label }),
    el("span", { class: "value" }, value));
}

function renderQueues(state) {
  const q = state.queue;
  const stats = [
    stat("Backend", q.backend),
    stat("Waiting", q.waiting === null ? "unknown"
      : String(Object.values(q.waiting).reduce((a, b) => a + b, 0))),
    stat("In flight", dash(q.inFlight)),
    stat("Dead letters", dash(q.deadLetters)),
  ];
  if (q.outbox) {
    stats.push(stat("Outbox unsent", dash(q.outbox.unsent)));
    stats.push(stat("Outbox lag", duration(q.outbox.lagMs)));
  }
  const priorities = q.waiting === null ? [] : Object.entries(q.waiting)
    .map(([p, n]) => [Number(p), n])
    .sort((a, b) => b[0] - a[0])
    .map(([p, n]) => el("tr", {}, el("td", { text: p }), el("td", { class: "num", text: n })));
  const scope = state.tenant ? "tenant " + state.tenant : "all tenants";
  const ttf = q.timeToFinalMs;
  const flow = [
    stat("Confirmed", String(q.confirmed)),
    stat("Failed", String(q.failed)),
    stat("Settled / min", q.perMinute.toFixed(1)),
    stat("To final, p50", duration(ttf && ttf.p50)),
    stat("To final, p95", duration(ttf && ttf.p95)),
    stat("To final, max", duration(ttf && ttf.max)),
  ];
  const failures = q.recentFailures.map((f) => el("tr", { "data-order": f.orderId },
    el("td", {}, short(f.orderId)),
    el("td", { text: f.tenant }),
    el("td", {}, badge(dash(f.reason), "bad")),
    el("td", { text: f.status }),
    el("td", {}, when(f.failedAt))));
  replace("queue-body",
    el("p", { class: "caption", text: "The whole platform's queue (as /health reports it)" }),
    el("div", { class: "stats" }, stats),
    el("h3", { text: "Waiting per priority" }),
    table(["Priority", "Jobs"], priorities,
      q.waiting === null ? "the queue did not answer" : "nothing waiting"),
    el("h3", { text: "Last " + q.windowMinutes + " minutes, " + scope
      + (q.sampled ? " (latest events only)" : "") }),
    el("div", { class: "stats" }, flow),
    el("h3", { text: "Recent failures" }),
    table(["Order", "Tenant", "Reason", "Now", "Failed at"], failures, "no failed orders"));
}

function renderDeadLetters(state) {
  const dl = state.deadLetters;
  const count = document.getElementById("dead-count");
  count.textContent = String(dl.total);
  count.className = dl.total > 0 ? "count bad" : "count";
  const rows = dl.items.map((d) => {
    const retry = el("button", { type: "button", class: "retry", text: "Retry" });
    retry.addEventListener("click", () => act(retry,
      "/admin/dead-letters/" + encodeURIComponent(d.orderId) + "/retry", undefined,
      (order) => "order " + order.id + " queued again: " + order.status));
    const discard = el("button", { type: "button", class: "discard danger", text: "Discard" });
    discard.addEventListener("click", () => {
      // Two clicks: discarding gives the order up for good.
      if (!discard.classList.contains("armed")) {
        discard.classList.add("armed");
        discard.textContent = "Discard for good?";
        setTimeout(() => {
          discard.classList.remove("armed");
          discard.textContent = "Discard";
        }, 4000);
        return;
      }
      act(discard, "/admin/dead-letters/" + encodeURIComponent(d.orderId) + "/discard",
        undefined, (order) => "order " + order.id + " discarded: " + order.status + " "
          + order.reason);
    });
    const money = d.total === null ? "—" : amount(d.total, d.currency);
    return el("tr", { "data-order": d.orderId },
      el("td", {}, short(d.orderId)),
      el("td", { text: d.tenant }),
      el("td", { class: "num", text: money }),
      el("td", { class: "num", text: d.priority }),
      el("td", { class: "num", text: d.attempts }),
      el("td", { class: "error-text", text: dash(d.lastError) }),
      el("td", {}, when(d.lastAttemptAt)),
      el("td", { class: "actions" }, retry, discard));
  });
  const shown = dl.items.length < dl.total
    ? el("p", { class: "muted", text: "the latest " + dl.items.length + " of " + dl.total })
    : null;
  replace("dead-body",
    table(["Order", "Tenant", "Total", "Priority", "Attempts", "Last error", "Died", ""],
      rows, "no dead letters"),
    shown || "");
}

function candidate(c) {
  return c ? el("span", {}, el("code", { text: c.component }), " " + c.percent + " %") : "—";
}

function breakerCell(breaker) {
  if (!breaker) {
    return "—";
  }
  const kind = { closed: "good", "half-open": "warn", open: "bad" }[breaker.state] || "";
  const detail = (breaker.windowCalls
    ? breaker.windowFailures + " of " + breaker.windowCalls + " calls failed"
    : "no calls in the window")
    + (breaker.timesOpened ? ", opened " + breaker.timesOpened + "×" : "");
  return el("span", {}, badge(breaker.state, kind), " ", el("small", { class: "muted", text: detail }));
}

function rollbackUrl(tenant, hook) {
  return "/admin/tenants/" + encodeURIComponent(tenant) + "/bindings/"
    + encodeURIComponent(hook) + "/rollback";
}

function renderTenant(t) {
  const rows = t.bindings.map((b) => {
    const breaker = t.breakers.find((x) => x.hook === b.hook);
    let action = "";
    if (b.source === "database") {
      const button = el("button", { type: "button", class: "rollback", text: "Roll back" });
      button.addEventListener("click", () => act(button, rollbackUrl(t.tenant, b.hook), {
        reason: "rolled back from the console",
      }, (change) => t.tenant + " " + b.hook + ": revision " + change.change.revision
        + " now serves " + dash(change.change.component)));
      action = button;
    }
    return el("tr", { "data-tenant": t.tenant, "data-hook": b.hook },
      el("td", { text: b.hook }),
      el("td", {}, el("code", { class: "component", text: b.component })),
      el("td", { text: b.source }),
      el("td", { class: "revision num", text: dash(b.revision) }),
      el("td", {}, candidate(b.canary)),
      el("td", {}, candidate(b.shadow)),
      el("td", {}, breakerCell(breaker)),
      el("td", { text: b.onError }),
      el("td", { class: "actions" }, action));
  });
  const serving = new Set(t.bindings.map((b) => b.hook + "@" + b.revision));
  const history = t.history.map((h) => {
    let restore = "";
    // The revision serving its hook now has nothing to restore.
    if (!serving.has(h.hook + "@" + h.revision)) {
      restore = el("button", { type: "button", class: "restore quiet", text: "Restore" });
      restore.addEventListener("click", () => act(restore, rollbackUrl(t.tenant, h.hook), {
        revision: h.revision,
        reason: "restored revision " + h.revision + " from the console",
      }, (change) => t.tenant + " " + h.hook + ": revision " + change.change.revision
        + " restores " + h.revision));
    }
    return el("tr", { "data-revision": h.revision },
      el("td", { class: "num", text: h.revision }),
      el("td", { text: h.hook }),
      el("td", { text: h.action }),
      el("td", {}, h.component ? el("code", { text: h.component }) : "(TOML or built-in)"),
      el("td", { text: dash(h.byEmail || h.by) }),
      el("td", {}, when(h.at)),
      el("td", { class: "reason", text: dash(h.reason) }),
      el("td", { class: "actions" }, restore));
  });
  return el("div", { class: "tenant", "data-tenant": t.tenant },
    el("h3", {}, "Tenant ", el("strong", { text: t.tenant }), " · revision ",
      el("span", { class: "tenant-revision", text: t.revision })),
    table(["Hook", "Component", "Source", "Revision", "Canary", "Shadow", "Breaker",
      "On error", ""], rows, "no hooks"),
    el("h4", { text: "Latest changes" }),
    table(["Rev", "Hook", "Action", "Component", "By", "When", "Reason", ""], history,
      "never changed over the API: the TOML files or the built-ins serve"));
}

function renderBindings(state) {
  const more = state.tenantsNotShown > 0
    ? " " + state.tenantsNotShown + " more tenants: pick one above." : "";
  document.getElementById("bindings-note").textContent =
    "Breakers, shadows and canary counters are per process: these are replica "
    + state.replica.slice(0, 8) + "'s." + more;
  replace("bindings-body", ...state.bindings.map(renderTenant));
}

function renderReplicas(state) {
  const r = state.replicas;
  const rows = r.replicas.map((x) => el("tr", { "data-replica": x.id },
    el("td", {}, short(x.id), x.id === r.this ? badge("answering", "good") : ""),
    el("td", {}, when(x.started)),
    el("td", { class: "num", text: x.revision }),
    el("td", { class: "num", text: x.generation }),
    el("td", { text: Object.entries(x.tenants).map(([k, v]) => k + " @ " + v).join(", ") || "—" }),
    el("td", {}, when(x.lastHeartbeat))));
  replace("replicas-body",
    el("p", { class: "caption", text: r.source === "redis"
      ? "Every replica with a live heartbeat in Redis."
      : "No Redis: this process only." }),
    table(["Replica", "Started", "Revision", "Generation", "Tenants (revision)",
      "Last heartbeat"], rows, "none"));
}

function renderHeader(state) {
  const picker = document.getElementById("tenant-picker");
  const wanted = tenantParam();
  const options = (state.viewer.role === "operator" ? [""] : []).concat(state.tenants);
  const key = JSON.stringify([options, wanted]);
  if (rendered.picker !== key) {
    rendered.picker = key;
    picker.replaceChildren(...options.map((slug) => el("option", {
      value: slug,
      selected: slug === (state.tenant || ""),
    }, slug || "All tenants")));
  }
  document.getElementById("viewer").textContent =
    state.viewer.email + " (" + state.viewer.role + ", " + state.viewer.tenant + ")";
}

function renderPanel(name, data, render, state) {
  const key = JSON.stringify(data);
  if (rendered[name] === key) {
    return;
  }
  rendered[name] = key;
  render(state);
}

function render(state) {
  renderHeader(state);
  renderPanel("queues", [state.queue, state.tenant], renderQueues, state);
  renderPanel("dead", state.deadLetters, renderDeadLetters, state);
  renderPanel("bindings", [state.bindings, state.replica, state.tenantsNotShown],
    renderBindings, state);
  renderPanel("replicas", state.replicas, renderReplicas, state);
  const stamp = document.getElementById("updated");
  stamp.textContent = "updated at " + new Date().toLocaleTimeString();
  stamp.className = "stamp";
}

// ---- polling ------------------------------------------------------------------------------

async function poll() {
  if (polling) {
    again = true;
    return;
  }
  polling = true;
  again = false;
  clearTimeout(timer);
  try {
    const tenant = tenantParam();
    const url = STATE_URL + (tenant ? "?tenant=" + encodeURIComponent(tenant) : "");
    const response = await call("GET", url);
    if (response.ok) {
      render(await response.json());
    } else if (response.status !== 401) {
      notify(await errorText(response), true);
      document.getElementById("updated").className = "stamp stale";
    }
  } catch (e) {
    const stamp = document.getElementById("updated");
    stamp.textContent = "no answer (" + e.message + "); retrying";
    stamp.className = "stamp stale";
  } finally {
    polling = false;
    timer = setTimeout(poll, again ? 0 : POLL_MS);
  }
}

document.getElementById("tenant-picker").addEventListener("change", (event) => {
  const url = new URL(window.location.href);
  if (event.target.value) {
    url.searchParams.set("tenant", event.target.value);
  } else {
    url.searchParams.delete("tenant");
  }
  window.history.replaceState(null, "", url);
  poll();
});

document.getElementById("sign-out").addEventListener("click", async () => {
  try {
    await fetch("/auth/logout", { method: "POST", credentials: "same-origin" });
  } finally {
    window.location.assign(LOGIN_URL);
  }
});

poll();
